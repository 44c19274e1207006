"""`kinformer get`, `watch` and `serve`, with `--fake` and against a kubeconfig."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import aiohttp
import anyio
import pytest
import yaml
from anyio.streams.buffered import BufferedByteReceiveStream

from kinformer.cli import main
from kinformer.testing import FakeApiServer
from tests.web.conftest import pod

DEFAULT_PODS = ["api-00000000", "api-00000003", "web-00000001", "web-00000002", "web-00000004"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def column(table: str, index: int) -> list[str]:
    return [line.split()[index] for line in table.splitlines()[1:]]


def test_get_prints_kubectls_table_for_the_contexts_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "get", "pods", "--fake")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert column(out, 0) == DEFAULT_PODS
    assert column(out, 2) == ["Running", "Running", "Running", "Running", "Pending"]


def test_get_with_selectors_wide_and_all_namespaces(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "get", "po", "--fake", "-A", "-l", "app=web", "-o", "wide")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert list(zip(column(out, 0), column(out, 1), strict=True)) == [
        ("default", "web-00000001"), ("default", "web-00000002"), ("default", "web-00000004"),
        ("team-a", "web-00000005"), ("team-a", "web-00000007"), ("team-b", "web-00000008")]
    code, out, _ = run(capsys, "get", "pods", "--fake", "--field-selector", "status.phase=Pending")
    assert (code, column(out, 0)) == (0, ["web-00000004"])
    code, out, _ = run(capsys, "get", "deployments.apps", "--fake", "-A")
    assert out.splitlines()[0].split() == ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert column(out, 1) == ["web", "api"]
    code, out, _ = run(capsys, "get", "pods", "--fake", "-n", "", "-l", "app=api")  # "" is every namespace
    assert (out.splitlines()[0].split()[0], column(out, 1)) == ("NAMESPACE", [
        "api-00000000", "api-00000003", "api-00000006"])
    code, out, _ = run(capsys, "get", "ns", "--fake")
    assert (out.splitlines()[0].split(), column(out, 0)) == (["NAME", "AGE"], ["default", "team-a", "team-b"])


def test_get_json_and_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "get", "pods", "--fake", "-o", "json", "-l", "app=api")
    doc = json.loads(out)
    assert (code, doc["kind"], doc["apiVersion"]) == (0, "List", "v1")
    assert [i["metadata"]["name"] for i in doc["items"]] == ["api-00000000", "api-00000003"]
    assert list(doc["items"][0])[:2] == ["apiVersion", "kind"] and doc["items"][0]["kind"] == "Pod"
    code, out, _ = run(capsys, "get", "pods", "--fake", "-o", "yaml", "-n", "team-a")
    doc = yaml.safe_load(out)
    assert [i["metadata"]["name"] for i in doc["items"]] == ["api-00000006", "web-00000005", "web-00000007"]


def test_get_errors_exit_non_zero_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "get", "widgets", "--fake")
    assert (code, out) == (1, "")
    assert err.strip() == "kinformer: unknown resource 'widgets': use a built-in resource (pods, deployments, ...)"
    code, out, err = run(capsys, "get", "pods", "--fake", "-n", "nowhere")
    assert (code, out, err.strip()) == (0, "", "No resources found in nowhere namespace.")


def test_watch_prints_one_line_per_event_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "watch", "pods", "--fake", "--fake-churn", "50", "--max-events", "7")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 7
    assert sorted(line.split()[1] for line in lines[:5]) == [f"default/{n}" for n in DEFAULT_PODS]
    assert all(line.startswith("ADDED    default/") for line in lines[:5])
    assert all(line.startswith("MODIFIED default/") and " rv=" in line for line in lines[5:])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


async def test_get_against_a_kubeconfig(capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeApiServer() as server:
        server.create("pods", pod("from-kubeconfig", "default", app="x"))
        # The command runs its own event loop: in a thread, while this loop serves the fake server.
        code = await anyio.to_thread.run_sync(main, ["get", "pods", "--kubeconfig", server.kubeconfig_path()])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert column(out, 0) == ["from-kubeconfig"]


async def test_serve_answers_the_api_health_metrics_and_the_page(tmp_path: Any) -> None:
    errors = tmp_path / "stderr"
    with errors.open("wb") as err:
        proc = await anyio.open_process([sys.executable, "-m", "kinformer.cli", "serve", "--fake", "--port", "0",
                                         "--resources", "pods,deploy"], stdout=subprocess.PIPE, stderr=err,
                                        env=_env())
    try:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            first = (await BufferedByteReceiveStream(proc.stdout).receive_until(b"\n", 1000)).decode()
        assert first.startswith("serving http://127.0.0.1:"), (first, errors.read_text())
        url = first.split()[1].rstrip("/")
        async with aiohttp.ClientSession() as session:
            async def get(path: str) -> tuple[int, str, Any]:
                async with session.get(url + path) as resp:
                    return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

            async def ready() -> bool:
                return (await get("/readyz"))[0] == 200

            with anyio.fail_after(15):
                while not await ready():  # noqa: ASYNC110 - polling another process's state
                    await anyio.sleep(0.05)
            status, _, body = await get("/api/v1/namespaces/team-a/pods?labelSelector=app%3Dweb")
            assert status == 200
            assert [i["metadata"]["name"] for i in json.loads(body)["items"]] == ["web-00000005", "web-00000007"]
            status, _, body = await get("/apis/apps/v1/deployments")
            assert [i["metadata"]["name"] for i in json.loads(body)["items"]] == ["web", "api"]
            assert (await get("/livez"))[0] == 200
            status, ctype, body = await get("/metrics")
            assert status == 200 and b'informer_cached_items{group="",name="kinformer",resource="pods"' in body
            status, ctype, body = await get("/")
            assert status == 200 and ctype.startswith("text/html") and b"<title>kinformer cache</title>" in body
            assert b'"name":"deployments.apps"' in body
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await proc.wait() == 0, errors.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()


def test_wait_for_the_reason_when_a_cluster_is_unreachable(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Any) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}}]}))
    code, out, err = run(capsys, "get", "pods", "--kubeconfig", str(config), "--request-timeout", "0.3")
    assert (code, out) == (1, "")
    last = err.splitlines()[-1]
    assert last.startswith("kinformer: the pods cache did not sync within 0.3 s (ConnectionFailedError"), err
    assert "namespace=team-a" in err  # the context's namespace was used




def test_watch_draws_a_live_table_on_a_terminal(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run(capsys, "watch", "pods", "--fake", "--fake-churn", "50", "--max-events", "7", "-A")
    assert code == 0
    assert "RESOURCE VERSION" in out and "NAMESPACE" in out
    assert "pods: 9 cached" in out and "web-00000008" in out
    assert "MODIFIED" not in out  # a table of the cache, not event lines
