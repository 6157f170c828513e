"""Locate PostgreSQL client and server binaries (pg_dump, pg_restore, initdb, pg_ctl)."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path

# The PostgreSQL majors the production database may run: Neon's (14-17, 17 for new projects). The worker image
# (deployments/Dockerfile) installs the client of each: backup-database refuses a pg_dump older than the server,
# and a pg_restore newer than the target server may not restore into it (17's and 18's send
# `SET transaction_timeout`, which a 14-16 server rejects), so each server gets the client of its own major.
SUPPORTED_SERVER_MAJORS = (14, 15, 16, 17)
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


class PgBinaryNotFound(RuntimeError):
    """A PostgreSQL binary is not installed where we looked."""


def find_pg_binary(name: str, bin_dir: Path | None = None, *, server_major: int | None = None) -> str:
    """`bin_dir` if given; else /usr/lib/postgresql/<server_major>/bin (Debian) when the server's major is given
    and installed; else the newest /usr/lib/postgresql/<major>/bin; else PATH."""
    if bin_dir is not None:
        candidate = Path(bin_dir) / name
        if candidate.exists():
            return str(candidate)
        raise PgBinaryNotFound(f"{name} not found in PG_BIN_DIR={bin_dir}")
    if server_major is not None and (DEBIAN_PG_ROOT / str(server_major) / "bin" / name).exists():
        return str(DEBIAN_PG_ROOT / str(server_major) / "bin" / name)
    candidates = sorted(
        glob.glob(f"{DEBIAN_PG_ROOT}/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
        reverse=True,
    )
    if candidates:
        return candidates[0]
    found = shutil.which(name)
    if found:
        return found
    raise PgBinaryNotFound(
        f"PostgreSQL binary {name!r} not found; install it (Debian: apt-get install postgresql-15) or set PG_BIN_DIR"
    )


def binary_version(path: str) -> str:
    """`pg_dump (PostgreSQL) 15.18 (Debian ...)` -> "15.18"."""
    output = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)(?:\.(\d+))?", output.split(")", 1)[-1] if ")" in output else output)
    if not match:
        raise PgBinaryNotFound(f"cannot read the version of {path}: {output.strip()!r}")
    return match.group(0)


def major_version(version: str) -> int:
    return int(version.split(".")[0])
