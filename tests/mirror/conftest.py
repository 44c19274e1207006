"""Fixtures for the mirror: a real PostgreSQL started by the tests, and a URL per dialect.

PostgreSQL comes from Debian's `postgresql` package. When its binaries are missing the
session installs it (`apt-get install -y postgresql`, which needs root; `make pg-install`
does the same once for a machine); only if that fails are the PostgreSQL tests skipped, with
the reason. The server runs as the `postgres` user (initdb and postgres refuse root) in a
temporary directory, on a free loopback port, with fsync off (an OS crash is not a test
case; a killed server still recovers every commit from its WAL, so synchronous commit stays
on), and is stopped at the end of the session. `PostgresServer.stop()` (an immediate
shutdown: a crash) and `start()` let a test take the database away mid-sync.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kinformer.mirror.storage import MirrorStorage


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _install_postgres() -> str | None:
    """Install Debian's postgresql; None on success, else why not."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "PostgreSQL binaries are missing and this is not a root Debian machine (apt-get install postgresql)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        if result.returncode != 0:
            return f"{' '.join(cmd)} failed: {result.stderr.strip()[-500:]}"
    return None


class PostgresServer:
    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sock"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stdout[-1000:]} {result.stderr[-1000:]}")

    def init(self) -> None:
        self.sockets.mkdir(parents=True)
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        reason = _install_postgres()
        bindir = _pg_bindir()
        if bindir is None:
            pytest.skip(f"PostgreSQL TESTS SKIPPED: {reason or 'initdb not found after installing postgresql'}")
    root = Path(tempfile.mkdtemp(prefix="kinformer-pg-"))
    server = PostgresServer(bindir, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped (an outage test that did not restart)
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


class Db:
    """One fresh database: a SQLite file, or a new schema in the session's PostgreSQL."""

    def __init__(self, url: str, schema: str | None = None, server: PostgresServer | None = None) -> None:
        self.url, self.schema, self.server = url, schema, server
        self.dialect = "postgresql" if url.startswith("postgresql") else "sqlite"

    def storage(self, **kwargs: Any) -> MirrorStorage:
        return MirrorStorage(self.url, schema=self.schema, **kwargs)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """A fresh database of each dialect (a schema per test on PostgreSQL: creating one is instant)."""
    if request.param == "sqlite":
        return Db(f"sqlite+aiosqlite:///{tmp_path / 'mirror.db'}")
    server: PostgresServer = request.getfixturevalue("postgres")
    return Db(server.url(), f"t_{uuid.uuid4().hex[:12]}", server)


@pytest_asyncio.fixture
async def storage(db: Db) -> AsyncIterator[MirrorStorage]:
    async with db.storage() as s:
        yield s
