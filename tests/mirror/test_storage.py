"""MirrorStorage on SQLite and on a real PostgreSQL: schema, RV-guarded upserts, deletes, state."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import sqlalchemy as sa

from kinformer import Resource
from kinformer.errors import SchemaVersionError, StorageError, StorageUnavailableError
from kinformer.mirror.storage import SCHEMA_VERSION, MirrorStorage, StreamBatch, normalize_url, schema_table
from tests.mirror.conftest import Db

PODS = Resource.pods
NODES = Resource.nodes


def table(storage: MirrorStorage) -> str:
    return f"{storage.schema}.kinformer_resources" if storage.schema else "kinformer_resources"


def pod(name: str, rv: str, ns: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": rv,
                         "labels": labels, "creationTimestamp": "2024-05-01T10:00:00Z",
                         "ownerReferences": [{"uid": "not-controller"}, {"uid": "rs-1", "controller": True}]},
            "spec": {"nodeName": "n1"}}


async def test_write_then_read_state_and_objects(storage: MirrorStorage) -> None:
    await storage.write([StreamBatch("a", PODS, [pod("p1", "5"), pod("p2", "7", ns="kube-system")], [], "9"),
                         StreamBatch("b", PODS, [pod("p1", "3")], [], None)])
    known, checkpoint = await storage.read_state("a", PODS)
    assert known == {"default/p1": 5, "kube-system/p2": 7} and checkpoint == "9"
    assert await storage.read_state("b", PODS) == ({"default/p1": 3}, "")
    objects = await storage.objects("a", PODS)
    assert objects["default/p1"] == pod("p1", "5")
    async with storage.engine.connect() as conn:
        row = (await conn.execute(sa.text(
            f"SELECT owner_uid, uid, kind, resource_version, rv, namespace FROM {table(storage)} "
            "WHERE cluster = 'a' AND name = 'p1'"))).one()
    assert tuple(row) == ("rs-1", "uid-p1", "Pod", "5", 5, "default")
    assert await storage.count() == 3 and await storage.count("a") == 2


async def test_upsert_never_moves_a_row_back_in_time(storage: MirrorStorage) -> None:
    await storage.write([StreamBatch("a", PODS, [pod("p", "10")])])
    newer = pod("p", "12")
    newer["spec"]["nodeName"] = "n2"
    await storage.write([StreamBatch("a", PODS, [newer])])
    await storage.write([StreamBatch("a", PODS, [pod("p", "11")])])  # late
    await storage.write([StreamBatch("a", PODS, [pod("p", "9")])])  # replayed
    assert (await storage.get("a", PODS, "p", "default") or {})["spec"]["nodeName"] == "n2"
    assert (await storage.read_state("a", PODS))[0] == {"default/p": 12}


async def test_numeric_comparison_not_text(storage: MirrorStorage) -> None:
    await storage.write([StreamBatch("a", PODS, [pod("p", "9")])])
    await storage.write([StreamBatch("a", PODS, [pod("p", "10")])])  # "10" < "9" as text
    assert (await storage.read_state("a", PODS))[0] == {"default/p": 10}


async def test_an_opaque_rv_always_overwrites(storage: MirrorStorage) -> None:
    await storage.write([StreamBatch("a", PODS, [pod("p", "abc")])])
    await storage.write([StreamBatch("a", PODS, [pod("p", "abd")])])
    assert (await storage.read_state("a", PODS))[0] == {"default/p": "abd"}


async def test_deletes_by_key_and_cluster_scoped_keys(storage: MirrorStorage) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u", "resourceVersion": "4"}}
    await storage.write([StreamBatch("a", PODS, [pod("p1", "1"), pod("p2", "2")]),
                         StreamBatch("a", NODES, [node]), StreamBatch("b", PODS, [pod("p1", "1")])])
    await storage.write([StreamBatch("a", PODS, [], ["default/p1"]), StreamBatch("a", NODES, [], ["n1"])])
    assert (await storage.read_state("a", PODS))[0] == {"default/p2": 2}
    assert (await storage.read_state("a", NODES))[0] == {}
    assert (await storage.read_state("b", PODS))[0] == {"default/p1": 1}


async def test_delete_then_recreate_in_one_batch_order(storage: MirrorStorage) -> None:
    await storage.write([StreamBatch("a", PODS, [pod("p", "3")])])
    # A batch deletes before it upserts: a coalesced "delete, then re-create" never loses the new object.
    await storage.write([StreamBatch("a", PODS, [pod("q", "8")], ["default/p"])])
    assert (await storage.read_state("a", PODS))[0] == {"default/q": 8}


async def test_purge_one_resource_or_a_whole_cluster(storage: MirrorStorage) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u", "resourceVersion": "4"}}
    await storage.write([StreamBatch("a", PODS, [pod("p1", "1")], [], "5"), StreamBatch("a", NODES, [node], [], "5"),
                         StreamBatch("b", PODS, [pod("p1", "1")], [], "6")])
    assert await storage.purge("a", NODES) == 1
    assert sorted(await storage.mirrored()) == ["a", "b"]
    assert [r for r, _ in (await storage.mirrored())["a"]] == [PODS]
    assert await storage.purge("a") == 1
    assert await storage.count() == 1 and list(await storage.mirrored()) == ["b"]


async def test_migration_is_idempotent_and_recorded(db: Db) -> None:
    async with db.storage() as first:
        await first.write([StreamBatch("a", PODS, [pod("p", "1")])])
    async with db.storage() as second:
        assert await second.count() == 1
        async with second.engine.connect() as conn:
            versions = (await conn.execute(sa.select(schema_table.c.version))).scalars().all()
    assert versions == [SCHEMA_VERSION]


async def test_a_newer_schema_is_refused(db: Db) -> None:
    async with db.storage() as s, s.engine.begin() as conn:
        await conn.execute(sa.insert(schema_table).values(version=SCHEMA_VERSION + 1,
                                                          applied_at=sa.func.current_timestamp()))
    with pytest.raises(SchemaVersionError, match="version 2"):
        async with db.storage():
            pass


async def test_labels_are_stored_queryable(storage: MirrorStorage) -> None:
    await storage.write([StreamBatch("a", PODS, [pod("p1", "1", app="web"), pod("p2", "2", app="db")])])
    async with storage.engine.connect() as conn:
        if storage.dialect == "postgresql":
            query = f"SELECT name FROM {table(storage)} WHERE labels @> '{{\"app\": \"web\"}}'"
        else:
            query = f"SELECT name FROM {table(storage)} WHERE json_extract(labels, '$.\"app\"') = 'web'"
        assert (await conn.execute(sa.text(query))).scalars().all() == ["p1"]


async def test_postgres_has_jsonb_and_a_gin_index(db: Db) -> None:
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    async with db.storage() as s, s.engine.connect() as conn:
        types = dict((await conn.execute(sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'kinformer_resources'"))).all())
        index = (await conn.execute(sa.text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_kinformer_resources_labels'"))).scalar()
    assert types["object"] == "jsonb" and types["labels"] == "jsonb"
    assert "gin" in str(index).lower()


async def test_sqlite_runs_in_wal_mode(tmp_path: Any) -> None:
    async with MirrorStorage(f"sqlite:///{tmp_path / 'x.db'}") as s, s.engine.connect() as conn:
        assert (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar() == "wal"


async def test_a_refused_row_is_a_storage_error_and_rolls_back(storage: MirrorStorage) -> None:
    good, bad = pod("good", "1"), pod("bad", "2")
    bad["metadata"]["name"] = "x" * 300  # longer than the column on PostgreSQL; SQLite takes it
    if storage.dialect == "sqlite":
        bad["metadata"]["name"] = None  # NOT NULL
    with pytest.raises(StorageError) as info:
        await storage.write([StreamBatch("a", PODS, [good, bad], [], "3")])
    assert not isinstance(info.value, StorageUnavailableError)
    assert await storage.count() == 0 and await storage.read_state("a", PODS) == ({}, "")


async def test_unreachable_database_is_unavailable(tmp_path: Any) -> None:
    with pytest.raises(StorageUnavailableError):
        async with MirrorStorage("postgresql+asyncpg://postgres@127.0.0.1:1/none", connect_timeout=1):
            pass
    with pytest.raises(StorageError, match="does not exist"):
        async with MirrorStorage(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"):
            pass


def test_plain_urls_get_async_drivers() -> None:
    assert normalize_url("sqlite:///m.db") == "sqlite+aiosqlite:///m.db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_url("sqlite+aiosqlite://") == "sqlite+aiosqlite://"


async def test_objects_are_stored_as_given(storage: MirrorStorage) -> None:
    obj = pod("p", "1")
    obj["data"] = {"unicode": "é ✓", "nested": [1, {"a": None}], "big": 2**53}
    await storage.write([StreamBatch("a", PODS, [copy.deepcopy(obj)])])
    assert await storage.get("a", PODS, "p", "default") == obj
