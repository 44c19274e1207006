"""The example operator (examples/replicator.py) against a real kube-apiserver: it converges,
restores a copy edited by a racing writer (409s on its stale replaces), moves and deletes
copies, leaves a foreign ConfigMap alone, and stops gracefully."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any

import anyio
import orjson

from kinformer import InformerFactory
from tests.e2e.conftest import raw
from tests.e2e.helpers import fast_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replicator.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("replicator_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


async def configmaps(api: Any, *namespaces: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ns in namespaces:
        status, body = await raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps")
        assert status == 200, body
        for item in body["items"]:
            out[f"{ns}/{item['metadata']['name']}"] = item
    return out


async def merge_patch(api: Any, path: str, patch: dict[str, Any]) -> Any:
    resp = await api.call_api(path, "PATCH", body=patch, auth_settings=["BearerToken"], _preload_content=False,
                              header_params={"Content-Type": "application/merge-patch+json",
                                             "Accept": "application/json"})
    try:
        return resp.status, orjson.loads(await resp.read())
    finally:
        resp.release()


async def wait_converged(api: Any, namespaces: tuple[str, ...], timeout: float = 30) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            state = await configmaps(api, *namespaces)
            if example.expected_copies(state) == example.actual_copies(state):
                return state
            await anyio.sleep(0.1)


async def test_the_example_operator_converges_on_a_real_server(api: Any) -> None:
    suffix = uuid.uuid4().hex[:6]
    src, team_a, team_b = (f"e2e-{role}-{suffix}" for role in ("src", "a", "b"))
    for ns in (src, team_a, team_b):
        status, body = await raw(api, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        assert status == 201, body
    for i in range(10):
        status, body = await raw(api, "POST", f"/api/v1/namespaces/{src}/configmaps", {
            "metadata": {"name": f"cm-{i}", "labels": {example.TARGET: team_a if i % 2 == 0 else team_b}},
            "data": {"v": "0"}})
        assert status == 201, body
    status, body = await raw(api, "POST", f"/api/v1/namespaces/{team_b}/configmaps",
                             {"metadata": {"name": "cm-3"}, "data": {"owner": "someone else"}})
    assert status == 201, body
    namespaces = (src, team_a, team_b)
    async with InformerFactory(api, reflector_config=fast_config()) as factory:
        controller = example.replicator(api, factory)
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            state = await wait_converged(api, namespaces)
            assert len(example.actual_copies(state)) == 9  # cm-3 is in the way in team-b
            assert state[f"{team_b}/cm-3"]["data"] == {"owner": "someone else"}
            assert controller.stats().terminal_errors >= 1

            for round_ in range(3):  # a racing writer edits a copy; the operator restores it
                copy = (await configmaps(api, team_a))[f"{team_a}/cm-0"]
                copy["data"] = {"v": f"theirs-{round_}"}
                status, body = await raw(api, "PUT", f"/api/v1/namespaces/{team_a}/configmaps/cm-0", copy)
                assert status in (200, 409), body
            for i in range(10):
                path = f"/api/v1/namespaces/{src}/configmaps/cm-{i}"
                if i == 4:
                    status, body = await raw(api, "DELETE", path)
                elif i == 6:  # its copy moves from team-a to team-b
                    status, body = await merge_patch(api, path, {"metadata": {"labels": {example.TARGET: team_b}}})
                else:
                    status, body = await merge_patch(api, path, {"data": {"v": "1"}})
                assert status == 200, body
            state = await wait_converged(api, namespaces)
            copies = example.actual_copies(state)
            assert f"{team_a}/cm-4" not in copies and f"{team_b}/cm-6" in copies and f"{team_a}/cm-6" not in copies
            assert copies[f"{team_a}/cm-0"] == {"v": "1"}
            tg.cancel_scope.cancel()
    assert controller.stats().active == 0
