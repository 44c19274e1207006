"""kinformer as a user gets it: the built wheel in a fresh venv, and mypy on a user's script.

The fresh venv is installed offline and fast: its dependencies are the distributions already
installed in this environment, repacked as wheels into a local wheelhouse, and pip resolves the
built wheel's own metadata against them (`--no-index --find-links`). pip installs only what that
metadata requires, so a package wrongly listed as a core dependency (rich, pytest) shows up as
importable in the core-only install, and a missing one fails the install.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent

# Installed by the user next to `kinformer[testing]` to run async tests (the extra leaves the
# runner to them).
RUNNER = "pytest-asyncio"

# Not something kinformer's core may pull in: each belongs to an extra or to the dev tools.
NOT_CORE = ("rich", "pytest", "pytest_asyncio", "hypothesis", "prometheus_client", "mypy", "fastapi", "httpx")


def _env() -> dict[str, str]:
    """The environment for child processes: nothing that would put this checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(*cmd: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def _check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result


# -- the wheel and its dependencies ------------------------------------------------------


def _build_wheel(out: Path) -> Path:
    """Build from a copy of the checkout, so no stale build/ directory leaks into the wheel."""
    src = out / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"))
    _check(_run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out / "dist", src, cwd=out))
    (wheel,) = (out / "dist").glob("kinformer-*.whl")
    return wheel


def _requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(name).decode()
    return [Requirement(line.split(":", 1)[1].strip()) for line in metadata.splitlines()
            if line.startswith("Requires-Dist:")]


def _closure(roots: list[Requirement], extras: set[str]) -> set[str]:
    """Names of the installed distributions these requirements need, transitively."""
    seen: set[str] = set()
    todo = [(r, extras) for r in roots]
    while todo:
        req, active = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in active | {""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        dist = importlib.metadata.distribution(name)
        todo.extend((Requirement(r), set(req.extras)) for r in dist.requires or ())
    return seen


def _record_line(path: str, data: bytes) -> list[str]:
    digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [path, f"sha256={digest}", str(len(data))]


def _repack(name: str, wheelhouse: Path) -> None:
    """Write the installed distribution `name` back out as a wheel pip can install."""
    dist = importlib.metadata.distribution(name)
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    assert tags, f"{name} was not installed from a wheel"
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]
    tag = "-".join(".".join(p) for p in parts)
    filename = f"{canonicalize_name(name).replace('-', '_')}-{dist.version}-{tag}.whl"
    records: list[list[str]] = []
    record_path = ""
    with zipfile.ZipFile(wheelhouse / filename, "w", zipfile.ZIP_STORED) as zf:
        for file in dist.files or ():
            path = file.as_posix()
            if ".." in file.parts or "__pycache__" in file.parts:
                continue  # console scripts (pip writes them again) and bytecode
            if path.endswith(".dist-info/RECORD"):
                record_path = path
                continue
            if path.rsplit("/", 1)[-1] in ("INSTALLER", "REQUESTED", "direct_url.json"):
                continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            zf.writestr(path, data)
            records.append(_record_line(path, data))
        assert record_path, f"{name} has no RECORD"
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([*records, [record_path, "", ""]])
        zf.writestr(record_path, buffer.getvalue())


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the kinformer wheel, a wheelhouse with everything `kinformer[testing]` + the runner need)."""
    out = tmp_path_factory.mktemp("packaging")
    wheel = _build_wheel(out)
    wheelhouse = out / "wheelhouse"
    wheelhouse.mkdir()
    for name in _closure([*_requirements(wheel), Requirement(RUNNER)], {"testing"}):
        _repack(name, wheelhouse)
    return wheel, wheelhouse


def _fresh_venv(path: Path) -> Path:
    _check(_run(sys.executable, "-m", "venv", "--without-pip", path, cwd=path.parent))
    return path / "bin" / "python"


def _pip_install(python: Path, wheelhouse: Path, *specs: str) -> None:
    # This environment's pip, run against the fresh venv's interpreter (so the venv needs no pip).
    _check(_run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index", "--no-compile",
                "--find-links", wheelhouse, *specs, cwd=wheelhouse))


# -- the tests ---------------------------------------------------------------------------


def test_wheel_contents_and_metadata(packaged: tuple[Path, Path]) -> None:
    wheel, _ = packaged
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert {"kinformer/py.typed", "kinformer/testing/pytest_plugin.py", "kinformer/testing/server.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
    assert "kinformer = kinformer.cli:main" in entry_points
    assert "kinformer = kinformer.testing.pytest_plugin" in entry_points
    core = {canonicalize_name(r.name) for r in _requirements(wheel) if r.marker is None}
    assert core == {"kubernetes-asyncio", "anyio", "structlog", "orjson", "aiohttp", "typing-extensions"}
    wanted = {"testing", "metrics", "web", "sql", "postgres", "demo", "dev"}
    extras = {e for r in _requirements(wheel) if r.marker is not None
              for e in wanted if r.marker.evaluate({"extra": e})}
    assert extras == wanted


def test_core_install_needs_no_optional_package(packaged: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, wheelhouse = packaged
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, wheelhouse, str(wheel))
    probe = textwrap.dedent(f"""
        import importlib.util, json, pathlib, sys
        import kinformer, kinformer.testing, kinformer.web
        from kinformer.testing import FakeApiServer
        try:
            kinformer.web.fastapi_router(kinformer.web.CacheApi())
            web_extra = None
        except kinformer.errors.MissingExtraError as exc:
            web_extra = exc.extra
        print(json.dumps({{
            "file": kinformer.__file__, "prefix": sys.prefix,
            "typed": (pathlib.Path(kinformer.__file__).parent / "py.typed").is_file(),
            "importable": [m for m in {NOT_CORE!r} if importlib.util.find_spec(m) is not None],
            "web_extra": web_extra,
        }}))
    """)
    found = json.loads(_check(_run(python, "-c", probe, cwd=tmp_path)).stdout)
    assert found["file"].startswith(found["prefix"])  # the installed wheel, not this checkout
    assert found["typed"]
    assert found["importable"] == []
    assert found["web_extra"] == "web"  # the aiohttp adapter is core; FastAPI's names its extra
    # The demo needs rich: without it, a message that names the extra, not a traceback.
    demo = _run(tmp_path / "venv" / "bin" / "kinformer", "demo", "--duration", "1", cwd=tmp_path)
    assert demo.returncode == 2, demo.stdout + demo.stderr
    assert "pip install 'kinformer[demo]'" in demo.stderr
    assert "Traceback" not in demo.stderr


USER_TEST = '''
import sys

import kinformer
from kinformer import InformerFactory, Resource
from kinformer.testing import eventually, make_pod


async def test_an_informer_against_the_fixture(fake_api_server, fake_api_client):
    assert kinformer.__file__.startswith(sys.prefix)
    fake_api_server.create("pods", make_pod(1, "default"))
    async with InformerFactory(fake_api_client) as factory:
        pods = factory.informer(Resource.pods)
        await eventually(lambda: len(pods.indexer.list()) == 1, 10)
        fake_api_server.create("pods", make_pod(2, "default"))
        await eventually(lambda: len(pods.indexer.list()) == 2, 10)
'''


def test_testing_extra_runs_a_users_test_with_the_fixtures(packaged: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, wheelhouse = packaged
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, wheelhouse, f"{wheel}[testing]", RUNNER)
    project = tmp_path / "operator"
    project.mkdir()
    (project / "test_operator.py").write_text(USER_TEST)
    result = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
                  "test_operator.py", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


# -- mypy sees the development install ---------------------------------------------------

GOOD_SCRIPT = '''
from kinformer import meta_namespace_key

key: str = meta_namespace_key({"metadata": {"name": "web", "namespace": "default"}})
reveal_type(meta_namespace_key)
'''

BAD_SCRIPT = '''
from kinformer import meta_namespace_key

key: int = meta_namespace_key({"metadata": {"name": "web", "namespace": "default"}})
'''


def test_mypy_on_a_users_script_sees_kinformers_types(tmp_path: Path) -> None:
    """`mypy --strict script.py` outside the checkout finds kinformer through this environment's install."""
    mypy = Path(sys.executable).parent / "mypy"
    (tmp_path / "good.py").write_text(GOOD_SCRIPT)
    (tmp_path / "bad.py").write_text(BAD_SCRIPT)
    cache = ("--cache-dir", str(tmp_path / "cache"))
    good = _run(mypy, "--strict", *cache, "good.py", cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    # A typed signature, not Any: mypy read kinformer's annotations.
    assert re.search(r'Revealed type is "def \(obj: .+\) -> (builtins\.)?str"', good.stdout), good.stdout
    bad = _run(mypy, "--strict", *cache, "bad.py", cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert 'bad.py:4: error: Incompatible types in assignment (expression has type "str", variable has type "int")' \
        in bad.stdout
