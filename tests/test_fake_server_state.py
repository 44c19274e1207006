"""FakeApiServer restarts: save_state/load_state, `--state-file` across processes, and watch_lag."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import anyio
import pytest

from kinformer import Resource
from kinformer.testing import FakeApiServer, make_configmap

WIDGETS = Resource("example.com", "v1", "widgets", True, "Widget")


async def _watch_first_line(server: FakeApiServer, rv: str) -> dict[str, object]:
    url = f"{server.url}/api/v1/configmaps?watch=1&resourceVersion={rv}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as session, \
            session.get(url) as response:
        line = await response.content.readline()
    result: dict[str, object] = json.loads(line)
    return result


async def test_load_state_restores_objects_counter_and_resources_without_history(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    old = FakeApiServer()
    old.register(WIDGETS)
    for i in range(5):
        old.create("configmaps", make_configmap(f"cm-{i}", "default", i=str(i)))
    old.update("configmaps", {**old.get("configmaps", "cm-1", "default"), "data": {"i": "updated"}})
    old.delete("configmaps", "cm-2", "default")
    old.create(WIDGETS, {"metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 3}})
    old.save_state(path)
    assert not path.with_name("state.json.partial").exists()

    async with FakeApiServer() as new:
        new.load_state(path)
        assert new.objects("configmaps") == old.objects("configmaps")
        assert new.objects(WIDGETS) == old.objects(WIDGETS)
        assert new.resource_version == old.resource_version
        created = new.create("configmaps", make_configmap("cm-new", "default"))
        assert int(created["metadata"]["resourceVersion"]) == int(old.resource_version) + 1
        # History did not survive: resuming from before the restart is 410, from after it works.
        gone = await _watch_first_line(new, str(int(old.resource_version) - 1))
        assert gone["type"] == "ERROR" and gone["object"]["code"] == 410  # type: ignore[index]
        resumed = await _watch_first_line(new, old.resource_version)
        assert resumed["type"] == "ADDED" and resumed["object"]["metadata"]["name"] == "cm-new"  # type: ignore[index]


async def test_load_state_refuses_to_move_the_counter_backwards(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    FakeApiServer().save_state(path)
    server = FakeApiServer()
    server.create("configmaps", make_configmap("cm", "default"))
    with pytest.raises(ValueError, match="older"):
        server.load_state(path)


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kinformer.testing", "--json", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    with anyio.fail_after(30):
        line = await proc.stdout.readline()
    assert line, await proc.communicate()
    info: dict[str, str] = json.loads(line)
    return proc, info


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    with anyio.fail_after(15):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def _pod_names(info: dict[str, str]) -> list[str]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {info['token']}"}) as session, \
            session.get(f"{info['url']}/api/v1/pods") as response:
        body = await response.json()
    return sorted(item["metadata"]["name"] for item in body["items"])


async def test_state_file_makes_a_new_process_a_restart_of_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "server-state.json"
    proc, first = await _start("--seed-pods", "3", "--namespaces", "1", "--state-file", str(path))
    try:
        names = await _pod_names(first)
    finally:
        await _stop(proc)
    assert len(names) == 3 and path.exists()
    port = first["url"].rsplit(":", 1)[1]
    # Seeding is skipped when restoring: the same three pods, not six.
    proc, second = await _start("--port", port, "--seed-pods", "3", "--state-file", str(path))
    try:
        assert second["url"] == first["url"]
        assert second["resourceVersion"] == first["resourceVersion"]
        assert await _pod_names(second) == names
    finally:
        await _stop(proc)

