"""`kinformer serve` end to end with --allow-secrets, --deny, --token-file and
--show-secret-data, against a FakeApiServer in this process (so the test sees every request
serve makes), and the options' checks in-process."""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from kinformer._commands import add_commands, serve_setup
from kinformer.cli import main
from kinformer.testing import FakeApiServer, make_configmap, make_namespace
from kinformer.web import redact_secrets
from tests.web.conftest import pod

TOKEN = "cli-tok-RG9Ob3RMb2dNZQ"
WRONG = "cli-wrong-Tm9wZU5vcGU"
PASSWORD = "cli-pa55-tr0ub4dor"
ENCODED = base64.b64encode(PASSWORD.encode()).decode()
NEEDLES = (TOKEN, WRONG, PASSWORD, ENCODED)


def seed(server: FakeApiServer) -> None:
    server.create("namespaces", make_namespace("default"))
    server.create("pods", pod("web-1", "default", app="web"))
    server.create("configmaps", make_configmap("cfg", "default", password=PASSWORD))
    server.create("secrets", {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                              "metadata": {"name": "db", "namespace": "default"}, "data": {"password": ENCODED}})


@dataclass
class Served:
    url: str
    first_line: str
    session: aiohttp.ClientSession
    stderr: Path

    async def get(self, path: str, token: str | None = None, **params: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.get(self.url + path, params=params, headers=headers) as resp:
            body = await resp.read()
            if not resp.content_type.endswith("json"):
                return resp.status, body.decode()
            if params.get("watch"):  # one event a line
                return resp.status, [orjson.loads(line) for line in body.splitlines() if line.strip()]
            return resp.status, orjson.loads(body)


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, *argv: str) -> AsyncIterator[Served]:
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        proc = await anyio.open_process([sys.executable, "-m", "kinformer.cli", "serve", "--port", "0", *argv],
                                        stdout=subprocess.PIPE, stderr=err,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            first = (await BufferedByteReceiveStream(proc.stdout).receive_until(b"\n", 1000)).decode()
        assert first.startswith("serving http://127.0.0.1:"), (first, stderr.read_text())
        async with aiohttp.ClientSession() as session:
            served = Served(first.split()[1].rstrip("/"), first.strip(), session, stderr)
            with anyio.fail_after(15):
                while (await served.get("/readyz"))[0] != 200:  # noqa: ASYNC110 - another process's state
                    await anyio.sleep(0.05)
            yield served
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await proc.wait() == 0, stderr.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()


async def test_serve_with_secrets_allowed_a_deny_list_and_a_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    async with FakeApiServer() as server:
        seed(server)
        async with serve(tmp_path, "--kubeconfig", server.kubeconfig_path(), "--resources",
                         "pods,secrets,configmaps", "--allow-secrets", "--deny", "cm", "--token-file",
                         str(token_file)) as served:
            assert served.first_line.endswith("(pods, secrets; /readyz, /livez, /metrics; bearer token required)")
            assert (await served.get("/livez"))[0] == 200  # health needs no token
            for token in (None, WRONG):
                status, body = await served.get("/api/v1/pods", token)
                assert (status, body["reason"]) == (401, "Unauthorized")
            status, body = await served.get("/api/v1/pods", TOKEN)
            assert status == 200 and [i["metadata"]["name"] for i in body["items"]] == ["web-1"]
            status, body = await served.get("/api/v1/namespaces/default/secrets/db", TOKEN)
            assert (status, body["data"]) == (200, {"password": ""})
            status, body = await served.get("/api/v1/secrets", TOKEN)
            assert [i["data"] for i in body["items"]] == [{"password": ""}]
            status, events = await served.get("/api/v1/secrets", TOKEN, watch="1", timeoutSeconds="0.2")
            assert [(e["type"], e["object"]["data"]) for e in events] == [("ADDED", {"password": ""})]
            status, body = await served.get("/api/v1/configmaps", TOKEN)
            assert (status, body["reason"]) == (403, "Forbidden")
            status, body = await served.get("/api/v1", TOKEN)
            assert sorted(r["name"] for r in body["resources"]) == ["pods", "secrets"]
        paths = [r.path for r in server.requests]
    assert any("/secrets" in p for p in paths)
    assert not any("configmaps" in p for p in paths)  # the denied resource was never listed or watched
    err = served.stderr.read_text()
    assert "kinformer: not serving configmaps: denied" in err
    for needle in NEEDLES:
        assert needle not in err, needle


async def test_serve_does_not_inform_secrets_unless_allowed(tmp_path: Path) -> None:
    async with FakeApiServer() as server:
        seed(server)
        async with serve(tmp_path, "--kubeconfig", server.kubeconfig_path(), "--resources", "pods,secrets") as served:
            assert "(pods; /readyz" in served.first_line
            status, body = await served.get("/api/v1/namespaces/default/secrets/db")
            assert (status, body["reason"], body["details"]) == (403, "Forbidden", {"kind": "secrets"})
            status, body = await served.get("/api/v1")
            assert [r["name"] for r in body["resources"]] == ["pods"]
            assert (await served.get("/api/v1/pods"))[0] == 200  # no token configured: open
        paths = [r.path for r in server.requests]
    assert any("/pods" in p for p in paths)
    assert not any("secrets" in p for p in paths)  # no Secret ever entered the serving process
    err = served.stderr.read_text()
    assert "kinformer: not serving secrets: denied (serve them with --allow-secrets)" in err
    assert PASSWORD not in err and ENCODED not in err


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_serve_redacts_with_a_transform_unless_shown(tmp_path: Path) -> None:
    cache, factory = serve_setup(parse("--resources", "secrets", "--allow-secrets"), None)
    assert [r.plural for r in cache.resources] == ["secrets"] and not cache.reveal_secret_data
    assert factory.transform is redact_secrets  # the data is dropped before it reaches the cache
    cache, factory = serve_setup(parse("--resources", "secrets", "--allow-secrets", "--show-secret-data"), None)
    assert cache.reveal_secret_data and factory.transform is None
    cache, _ = serve_setup(parse("--resources", "pods,cm,deploy", "--deny", "cm", "--deny", "deployments.apps,sa"),
                           None)
    assert [r.plural for r in cache.resources] == ["pods"]
    assert cache.denied == {("", "secrets"), ("", "configmaps"), ("apps", "deployments"), ("", "serviceaccounts")}


def test_serve_refuses_inconsistent_exposure_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"  # loading it contacts nothing; the checks come before any request
    config.write_text(orjson.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}).decode())

    def run(*argv: str) -> tuple[int, str]:
        code = main(["serve", "--kubeconfig", str(config), "--port", "0", *argv])
        out, err = capsys.readouterr()
        assert out == ""  # never started serving
        return code, err.strip()

    assert run("--resources", "secrets", "--show-secret-data") == (
        1, "kinformer: --show-secret-data needs --allow-secrets")
    code, err = run("--token-file", str(tmp_path / "missing"))
    assert code == 1 and err.startswith("kinformer: cannot read the bearer token file") and "missing" in err
    code, err = run("--resources", "secrets")
    assert (code, err.splitlines()[-1]) == (1, "kinformer: nothing to serve: every resource given is denied")
