"""The code passes the project's ruff configuration (pyproject.toml)."""

import subprocess
import sys

from app.settings import PROJECT_ROOT


def test_ruff_finds_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "app", "flows", "tasks", "devenv", "bench", "tests"],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
