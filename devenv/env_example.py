"""Write `.env.example` from the Settings class, so it always lists every variable with its default.

`python -m devenv.env_example` rewrites the file; a test fails when it is out of date.
"""

from __future__ import annotations

import sys

from app.settings import PROJECT_ROOT, Settings

HEADER = """# textbook-ops configuration: every variable, with its default. Copy to .env and edit.
# Nothing is needed for the embedded defaults (local Postgres, Qdrant Edge, MiniLM, extractive answers).
# Generated from app/settings.py by `python -m devenv.env_example`.
"""
SHOWN_DEFAULTS = {"data_dir": ".data", "shared_dir": "../shared"}


def render() -> str:
    lines = [HEADER]
    for name, field in Settings.model_fields.items():
        default = SHOWN_DEFAULTS.get(name, field.default)
        if hasattr(default, "get_secret_value"):
            default = default.get_secret_value()
        if isinstance(default, dict | list):
            default = __import__("json").dumps(default)
        shown = "" if default is None else default
        note = f"  # {field.description}" if field.description else ""
        lines.append(f"# {name.upper()}={shown}{note}")
    return "\n".join(lines) + "\n"


def main() -> int:
    (PROJECT_ROOT / ".env.example").write_text(render())
    print("wrote .env.example")
    return 0


if __name__ == "__main__":
    sys.exit(main())
