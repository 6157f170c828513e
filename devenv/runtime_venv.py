"""The service's runtime environment, made the same way for the image and for its measure.

The image's build stage (deployments/Dockerfile), bench/runtime_size.py and tests/deploy/test_container.py all make
it with `create_runtime_venv`: a virtual environment without pip or setuptools, since nothing installs packages at
run time (the service and the worker run what the image carries; prefect.yaml's pull step only sets the working
directory), into which the pip of the Python running this installs the project's wheel and its dependencies.

    python -m devenv.runtime_venv VENV [pip install arguments...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def create_runtime_venv(venv: Path, pip_install_args: list[str], *, cwd: Path | None = None) -> Path:
    """Create `venv` without pip, install `pip_install_args` into it with this Python's pip; its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, cwd=cwd)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", *pip_install_args], check=True,
                   cwd=cwd)
    return python


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    create_runtime_venv(Path(args[0]), args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
