"""`kinformer mirror --kubeconfig A --kubeconfig B --db sqlite:///… --once` as a real process."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import orjson

from kinformer import Resource
from kinformer.mirror.storage import MirrorStorage
from kinformer.testing import FakeApiServer, make_configmap


async def test_mirror_two_kubeconfigs_once(tmp_path: Any) -> None:
    async with FakeApiServer() as a, FakeApiServer() as b:
        for i in range(3):
            a.create("configmaps", make_configmap(f"a-{i}", "default"))
        b.create("configmaps", make_configmap("b-0", "default"))
        db = tmp_path / "mirror.db"
        result = await anyio.run_process(
            [sys.executable, "-m", "kinformer.cli", "mirror", "--kubeconfig", a.kubeconfig_path(),
             "--kubeconfig", b.kubeconfig_path(), "--db", f"sqlite:///{db}", "--resources", "configmaps",
             "--once", "--status-every", "5"], check=False)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        status = orjson.loads(result.stdout.decode().strip().splitlines()[-1])
        assert status["clusters"] == {"fake": {"synced": True, "reachable": True, "resources": 1, "rows": 3},
                                      "fake-2": {"synced": True, "reachable": True, "resources": 1, "rows": 1}}
    async with MirrorStorage(f"sqlite:///{db}") as storage:
        assert sorted(await storage.objects("fake", Resource.configmaps)) == [f"default/a-{i}" for i in range(3)]
