"""`kinformer mirror --serve 127.0.0.1:0` as a real process: it prints where it listens,
answers /readyz and /search while mirroring, and ends cleanly on SIGINT."""

from __future__ import annotations

import signal
import sys
from typing import Any

import aiohttp
import anyio
import orjson
import pytest

from kinformer.cli import main
from kinformer.testing import FakeApiServer, make_configmap


async def test_mirror_serves_search(tmp_path: Any) -> None:
    async with FakeApiServer() as a, FakeApiServer() as b:
        for i in range(3):
            a.create("configmaps", make_configmap(f"a-{i}", "default"))
        b.create("configmaps", make_configmap("b-0", "team-b"))
        cmd = [sys.executable, "-m", "kinformer.cli", "mirror", "--kubeconfig", a.kubeconfig_path(),
               "--kubeconfig", b.kubeconfig_path(), "--name", "one", "--name", "two",
               "--db", f"sqlite:///{tmp_path / 'mirror.db'}", "--resources", "configmaps",
               "--serve", "127.0.0.1:0", "--status-every", "0.2"]
        async with await anyio.open_process(cmd) as process:
            assert process.stdout is not None
            try:
                with anyio.fail_after(30):
                    buffered = b""
                    url = None
                    while url is None:
                        buffered += await process.stdout.receive()
                        for line in buffered.splitlines():
                            if line.startswith(b'{"serving"'):
                                url = orjson.loads(line)["serving"]
                    async with aiohttp.ClientSession(url) as http:
                        while True:  # the status lines say when; /readyz is what a client would ask
                            async with http.get("/readyz") as resp:
                                if resp.status == 200:
                                    break
                            await anyio.sleep(0.05)
                        async with http.get("/search/core/v1/configmaps", params=[
                                ("clusters", "two"), ("count", "true")]) as resp:
                            body = await resp.json()
                        assert resp.status == 200, body
                        assert body["total"] == 1
                        assert [(i["cluster"], i["object"]["metadata"]["name"]) for i in body["items"]] == [
                            ("two", "b-0")]
                        async with http.get("/search", params=[("orderBy", "-metadata.name"),
                                                               ("limit", "2")]) as resp:
                            page = await resp.json()
                        assert [i["object"]["metadata"]["name"] for i in page["items"]] == ["b-0", "a-2"]
                        assert page["nextCursor"]
                process.send_signal(signal.SIGINT)
                with anyio.fail_after(20):
                    assert await process.wait() == 0
            finally:
                if process.returncode is None:
                    process.kill()


def test_serve_does_not_go_with_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mirror", "--kubeconfig", "x", "--once", "--serve", "127.0.0.1:0"]) == 2
    assert "--serve and --once do not go together" in capsys.readouterr().err
    assert main(["mirror", "--kubeconfig", "x", "--serve", "nowhere"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_serve_exposure_options_are_checked(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    base = ["mirror", "--kubeconfig", "x", "--serve", "127.0.0.1:0"]
    assert main([*base, "--show-secret-data"]) == 2
    assert "--show-secret-data needs --allow-secrets" in capsys.readouterr().err
    assert main([*base, "--allow-secrets", "--deny", "pods,secrets"]) == 2
    assert "both allowed" in capsys.readouterr().err
    empty = tmp_path / "token"
    empty.write_text("")
    assert main([*base, "--token-file", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
