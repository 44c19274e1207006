"""`kinformer fake-server` / `python -m kinformer.testing`: options, output, a usable kubeconfig, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import anyio
import pytest
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api

from kinformer.cli import main as kinformer_main
from kinformer.testing import FakeApiServer, make_pod
from kinformer.testing._cli import main as module_main


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)


async def _read_until(proc: asyncio.subprocess.Process, prefix: str) -> list[str]:
    """stdout lines up to and including the first that starts with `prefix`."""
    assert proc.stdout is not None
    lines: list[str] = []
    with anyio.fail_after(30):
        while not lines or not lines[-1].startswith(prefix):
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"exited before printing {prefix!r}: {lines}")
            lines.append(line.decode().rstrip("\n"))
    return lines


async def _stop(proc: asyncio.subprocess.Process, signum: int) -> tuple[str, str]:
    """Signal it (unless it already exited) and collect the rest of its output."""
    if proc.returncode is None:
        proc.send_signal(signum)
    with anyio.fail_after(15):
        out, err = await proc.communicate()
    return out.decode(), err.decode()


async def test_fake_server_command_prints_a_kubeconfig_that_kubernetes_asyncio_uses() -> None:
    proc = await _start("-m", "kinformer.cli", "fake-server", "--port", "0", "--seed-pods", "10",
                        "--namespaces", "3")
    try:
        lines = await _read_until(proc, "Serving until interrupted")
        text = "\n".join(lines)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
        kubeconfig = re.search(r"^kubeconfig: (\S+)", text, re.MULTILINE)
        assert url and kubeconfig, text
        path = kubeconfig.group(1)
        assert "10 pods in 3 namespaces" in text
        assert f"kubectl --kubeconfig {path} get pods -A" in text
        assert f"export KUBECONFIG={path}" in text

        configuration = Configuration()
        await kube_config.load_kube_config(config_file=path, client_configuration=configuration)
        assert configuration.host == url.group(1)
        async with ApiClient(configuration) as client:
            api = CoreV1Api(client)
            pods = await api.list_pod_for_all_namespaces()
            namespaces = await api.list_namespace()
        assert len(pods.items) == 10
        assert sorted(n.metadata.name for n in namespaces.items) == ["ns-0", "ns-1", "ns-2"]
        assert {p.metadata.namespace for p in pods.items} == {"ns-0", "ns-1", "ns-2"}
    finally:
        out, err = await _stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    assert "fake API server stopped" in out
    assert not await anyio.Path(path).exists()  # removed on the way out


async def test_python_m_kinformer_testing_json_output_token_and_ctrl_c() -> None:
    proc = await _start("-m", "kinformer.testing", "--json", "--seed-pods", "2", "--require-token",
                        "--token", "s3cret")
    try:
        info = json.loads((await _read_until(proc, "{"))[-1])
        assert set(info) == {"url", "token", "kubeconfig", "resourceVersion"}
        assert info["token"] == "s3cret"
        assert info["resourceVersion"] == "5"  # 1 + two Namespaces + two pods
        async with aiohttp.ClientSession() as session:
            async with session.get(info["url"] + "/api/v1/pods") as resp:
                assert resp.status == 401  # --require-token: no anonymous reads
            async with session.get(info["url"] + "/api/v1/pods", headers={"Authorization": "Bearer s3cret"}) as resp:
                assert resp.status == 200
                assert len((await resp.json())["items"]) == 2
    finally:
        out, err = await _stop(proc, signal.SIGINT)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert out == ""  # --json: nothing but the one line
    assert not await anyio.Path(info["kubeconfig"]).exists()


def _options(run: Callable[[list[str]], object], argv: list[str], capsys: pytest.CaptureFixture[str]) -> set[str]:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 0
    return set(re.findall(r"--[a-z][a-z-]+", capsys.readouterr().out))


def test_both_commands_take_the_same_options(capsys: pytest.CaptureFixture[str]) -> None:
    via_kinformer = _options(kinformer_main, ["fake-server", "--help"], capsys)
    via_module = _options(module_main, ["--help"], capsys)
    assert via_kinformer == via_module
    assert {"--seed-pods", "--port", "--token", "--json", "--require-token"} <= via_module


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_reads_through_the_kubeconfig(tmp_path: Path) -> None:
    """What the printed `kubectl --kubeconfig ... get pods -A` line does, against the same
    kubeconfig and auth settings the command uses."""
    async with FakeApiServer(allow_anonymous=True) as server:
        for i in range(3):
            server.create("pods", make_pod(i, "default"))
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", server.kubeconfig_path(), "--cache-dir", str(tmp_path), "get", "pods", "-A",
            "-o", "name", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(tmp_path)})
        with anyio.fail_after(30):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert sorted(out.decode().split()) == sorted(f"pod/{make_pod(i, 'default')['metadata']['name']}" for i in range(3))
