"""The soak's server-side writer: its seeded writes and fault schedule survive a restart unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kinformer.testing import FakeApiServer
from tests.soak import FAULTS, Writer


def _content(server: FakeApiServer) -> dict[str, dict[str, Any]]:
    return {name: {k: (o["metadata"]["resourceVersion"], o["metadata"]["labels"], o["data"])
                   for k, o in server.objects(name).items()}
            for name in ("configmaps", "secrets")}


async def test_a_restarted_writer_makes_the_same_writes_and_faults(tmp_path: Path) -> None:
    until, seed = 2400, 3
    straight = Writer(FakeApiServer(), seed, objects=200, fault_every=300)
    restarts = 0
    while await straight.run(until) == "restart":
        restarts += 1
    assert restarts >= 1 and straight.events == until

    server = FakeApiServer()
    writer = Writer(server, seed, objects=200, fault_every=300)
    while await writer.run(until) == "restart":
        server.save_state(tmp_path / "server.json")
        (tmp_path / "writer.json").write_text(json.dumps(writer.dump()))
        server = FakeApiServer()
        server.load_state(tmp_path / "server.json")
        writer = Writer(server, seed=-1, objects=200, fault_every=300)
        writer.load(json.loads((tmp_path / "writer.json").read_text()))
    assert _content(server) == _content(straight.server)
    assert writer.faults == straight.faults and set(writer.faults) == set(FAULTS)
    assert writer.faults["restart"] == restarts
