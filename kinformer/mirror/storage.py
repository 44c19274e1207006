"""`MirrorStorage`: many clusters' objects in one SQL database (SQLAlchemy 2 async).

Drivers: `sqlite+aiosqlite` (the default; a file, in WAL mode) and `postgresql+asyncpg`.
`sqlite:///path` and `postgresql://...` are accepted and given their async driver.

Schema (after Clusterpedia's `resources` table), version 1:

    kinformer_resources    one row per object: cluster, group, version, resource (the GVR),
                           namespace ("" when cluster-scoped), name — unique together —, kind,
                           uid, owner_uid (the controller owner's uid, "" if none),
                           resource_version (as the server sent it) and rv (the same as a
                           BIGINT when it parses, else NULL), labels (JSON; JSONB with a GIN
                           index on PostgreSQL), object (the whole object: JSON / JSONB),
                           created_at (creationTimestamp), deleted_at (deletionTimestamp),
                           synced_at (when this row was last written).
    kinformer_sync_state   per (cluster, group, version, resource): the collection's
                           resourceVersion up to which every change is in the table (the
                           watch resumes from it) and when it was written.
    kinformer_schema       the applied migration versions.

Invariants:
- A row never moves back in time: an upsert is `INSERT … ON CONFLICT (key) DO UPDATE … WHERE
  stored.rv < new.rv`, so a late or replayed event is a no-op. When either side's RV does
  not parse as an integer, the new row wins (an opaque RV can only be compared for equality,
  and the caller has already dropped equal ones).
- Deletes are by key, not guarded: the caller (one writer per database) orders them.
- `write()` applies every batch it is given, and their checkpoints, in ONE transaction: a
  checkpoint is never visible without the rows it covers.
- Migrations are owned by the library, as a versioned DDL table rather than Alembic (no
  extra dependency, no migration scripts shipped as data): `open()` applies the missing
  steps of `_MIGRATIONS` in one transaction (PostgreSQL: under an advisory lock, so two
  processes starting at once do not both migrate), and refuses a database whose schema is
  newer (`SchemaVersionError`). Step 1 creates the tables below; a later change to them
  adds a step with its own DDL.
- A connection failure is `StorageUnavailableError` (the caller retries); any other driver
  error is `StorageError`. Both carry the driver's error as `__cause__`.
- SQLite: pysqlite's implicit transaction handling is turned off and every transaction is
  an explicit `BEGIN` (SQLAlchemy's documented recipe), so DDL and batches are atomic;
  `busy_timeout` waits for another process's write lock instead of failing at once.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from kinformer._logging import get_logger
from kinformer.errors import MissingExtraError, SchemaVersionError, StorageError, StorageUnavailableError
from kinformer.mirror.rvinformer import RV, parse_rv
from kinformer.resources import Resource

try:
    import sqlalchemy as sa
    from sqlalchemy import event, exc
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
except ImportError as _missing:  # pragma: no cover - exercised by the packaging test's bare venv
    raise MissingExtraError("kinformer.mirror's SQL storage", "sqlalchemy", "sql") from _missing

SCHEMA_VERSION = 1
DEFAULT_URL = "sqlite+aiosqlite:///mirror.db"
_PG_LOCK_ID = 0x6B696E66  # "kinf": the advisory lock that serialises migrations
_BIGINT_LIMIT = 2**63  # an RV this large is kept as text only (rv NULL): an opaque RV

def normalize_url(url: str) -> str:
    """Give a plain `sqlite://` / `postgresql://` URL its async driver."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


# -- the schema --------------------------------------------------------------------------

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()

resources = sa.Table(
    "kinformer_resources", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("cluster", sa.String(253), nullable=False),
    sa.Column("group", sa.String(253), nullable=False),
    sa.Column("version", sa.String(63), nullable=False),
    sa.Column("resource", sa.String(253), nullable=False),
    sa.Column("namespace", sa.String(253), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("kind", sa.String(253), nullable=False),
    sa.Column("uid", sa.String(64), nullable=False),
    sa.Column("owner_uid", sa.String(64), nullable=False),
    sa.Column("resource_version", sa.String(64), nullable=False),
    sa.Column("rv", sa.BigInteger(), nullable=True),
    sa.Column("labels", _JSON, nullable=False),
    sa.Column("object", _JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("cluster", "group", "version", "resource", "namespace", "name",
                        name="uq_kinformer_resources_key"),
)
sa.Index("ix_kinformer_resources_gvr_ns_name", resources.c.group, resources.c.version, resources.c.resource,
         resources.c.namespace, resources.c.name)
sa.Index("ix_kinformer_resources_owner", resources.c.owner_uid)
sa.Index("ix_kinformer_resources_uid", resources.c.uid)
sa.Index("ix_kinformer_resources_labels", resources.c.labels, postgresql_using="gin").ddl_if(dialect="postgresql")

sync_state = sa.Table(
    "kinformer_sync_state", metadata,
    sa.Column("cluster", sa.String(253), primary_key=True),
    sa.Column("group", sa.String(253), primary_key=True),
    sa.Column("version", sa.String(63), primary_key=True),
    sa.Column("resource", sa.String(253), primary_key=True),
    sa.Column("kind", sa.String(253), nullable=False),
    sa.Column("namespaced", sa.Boolean(), nullable=False),
    sa.Column("resource_version", sa.String(64), nullable=False),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
)

schema_table = sa.Table(
    "kinformer_schema", metadata,
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

_KEY_COLUMNS = ("cluster", "group", "version", "resource", "namespace", "name")
_UPDATED_COLUMNS = ("kind", "uid", "owner_uid", "resource_version", "rv", "labels", "object", "created_at",
                    "deleted_at", "synced_at")


def _migration_1(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[resources, sync_state])


_MIGRATIONS = {1: _migration_1}


# -- rows --------------------------------------------------------------------------------


def _timestamp(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


def controller_uid(meta: Mapping[str, Any]) -> str:
    """The uid of the ownerReference with `controller: true`, or ""."""
    for ref in meta.get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


def split_key(key: str) -> tuple[str, str]:
    """`ns/name` → (ns, name); `name` → ("", name)."""
    namespace, _, name = key.rpartition("/")
    return namespace, name


@dataclass(slots=True)
class StreamBatch:
    """One (cluster, resource)'s share of a write: upserts, deleted keys, and optionally
    the collection RV that every change up to it is now stored at (the checkpoint)."""

    cluster: str
    resource: Resource
    upserts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    resource_version: str | None = None


@dataclass(slots=True)
class StorageStats:
    transactions: int = 0
    upserted: int = 0
    """Rows sent as upserts (a guarded no-op counts too: the database decides)."""
    deleted: int = 0
    checkpoints: int = 0


def _row(cluster: str, resource: Resource, obj: Mapping[str, Any], now: datetime.datetime) -> dict[str, Any]:
    meta = obj["metadata"]
    rv = str(meta.get("resourceVersion") or "")
    parsed = parse_rv(rv)
    return {
        "cluster": cluster, "group": resource.group, "version": resource.version, "resource": resource.plural,
        "namespace": meta.get("namespace") or "", "name": meta["name"],
        "kind": obj.get("kind") or resource.kind, "uid": meta.get("uid") or "", "owner_uid": controller_uid(meta),
        "resource_version": rv, "rv": parsed if isinstance(parsed, int) and parsed < _BIGINT_LIMIT else None,
        "labels": meta.get("labels") or {}, "object": obj,
        "created_at": _timestamp(meta.get("creationTimestamp")),
        "deleted_at": _timestamp(meta.get("deletionTimestamp")), "synced_at": now,
    }


def _orjson_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class MirrorStorage:
    """The mirror's database. `async with MirrorStorage(url) as storage:` opens and migrates it."""

    def __init__(self, url: str = DEFAULT_URL, *, schema: str | None = None, pool_size: int = 5,
                 connect_timeout: float = 5.0, busy_timeout: float = 10.0, **engine_kwargs: Any) -> None:
        """`schema`: a PostgreSQL schema to keep the tables in (created if missing);
        `busy_timeout`: how long a SQLite write waits for another process's lock before it
        fails (and is retried); `engine_kwargs` go to SQLAlchemy's `create_async_engine`."""
        self.url = normalize_url(url)
        self.schema = schema
        self.busy_timeout = busy_timeout
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._engine_kwargs = engine_kwargs
        self._engine: AsyncEngine | None = None
        self.stats = StorageStats()
        self.log = get_logger("kinformer.mirror.storage", dialect=self.url.split(":", 1)[0])

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StorageError("the storage is not open: use `async with MirrorStorage(...)` or `await open()`")
        return self._engine

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql"."""
        return self.engine.dialect.name

    async def open(self) -> None:
        """Create the engine and migrate the schema to `SCHEMA_VERSION`."""
        url = sa.make_url(self.url)
        kwargs: dict[str, Any] = {"json_serializer": _orjson_dumps, "json_deserializer": orjson.loads,
                                  **self._engine_kwargs}
        if url.get_backend_name() == "postgresql":
            kwargs.setdefault("pool_pre_ping", True)
            kwargs.setdefault("pool_size", self._pool_size)
            kwargs.setdefault("connect_args", {"timeout": self._connect_timeout})
        elif url.get_backend_name() != "sqlite":
            raise StorageError(f"unsupported database {url.get_backend_name()!r}: use sqlite or postgresql")
        if url.get_backend_name() == "sqlite":
            _check_sqlite_path(url.database)
        if self.schema is not None:
            if url.get_backend_name() != "postgresql" or not self.schema.isidentifier():
                raise StorageError(f"schema= needs PostgreSQL and a plain identifier, not {self.schema!r}")
            kwargs["execution_options"] = {"schema_translate_map": {None: self.schema}}
        engine = create_async_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            _sqlite_transactions(engine, file_backed=url.database not in (None, "", ":memory:"),
                                 busy_timeout_ms=int(self.busy_timeout * 1000))
        self._engine = engine
        try:
            await self._migrate()
        except BaseException:
            await engine.dispose()
            self._engine = None
            raise

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> MirrorStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _migrate(self) -> None:
        async with self._transaction() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_ID)))
                if self.schema is not None:
                    await conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
            await conn.run_sync(lambda c: metadata.create_all(c, tables=[schema_table]))
            applied = set((await conn.execute(sa.select(schema_table.c.version))).scalars())
            newest = max(applied, default=0)
            if newest > SCHEMA_VERSION:
                raise SchemaVersionError(f"the database's schema is version {newest}; this kinformer knows up to "
                                         f"{SCHEMA_VERSION}")
            for version in sorted(_MIGRATIONS):
                if version not in applied:
                    await conn.run_sync(_MIGRATIONS[version])
                    await conn.execute(sa.insert(schema_table).values(version=version, applied_at=_now()))
                    self.log.info("migrated the mirror's schema", version=version)

    def _transaction(self) -> _Transaction:
        return _Transaction(self.engine)

    # -- writes -----------------------------------------------------------------------------

    async def write(self, batches: Sequence[StreamBatch]) -> None:
        """Apply every batch (upserts, deletes, checkpoint) in one transaction."""
        now = _now()
        upserts: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        checkpoints: list[dict[str, Any]] = []
        for batch in batches:
            res = batch.resource
            upserts.extend(_row(batch.cluster, res, obj, now) for obj in batch.upserts)
            for key in batch.deletes:
                namespace, name = split_key(key)
                deletes.append({"c": batch.cluster, "g": res.group, "v": res.version, "r": res.plural,
                                "ns": namespace, "n": name})
            if batch.resource_version is not None:
                checkpoints.append({"cluster": batch.cluster, "group": res.group, "version": res.version,
                                    "resource": res.plural, "kind": res.kind, "namespaced": res.namespaced,
                                    "resource_version": batch.resource_version, "synced_at": now})
        if not (upserts or deletes or checkpoints):
            return
        async with self._transaction() as conn:
            if deletes:
                await conn.execute(_DELETE_BY_KEY, deletes)
            if upserts:
                await conn.execute(self._upsert_statement(conn), upserts)
            if checkpoints:
                await conn.execute(self._checkpoint_statement(conn), checkpoints)
        stats = self.stats
        stats.transactions += 1
        stats.upserted += len(upserts)
        stats.deleted += len(deletes)
        stats.checkpoints += len(checkpoints)

    @staticmethod
    def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
        if conn.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _upsert_statement(self, conn: AsyncConnection) -> Any:
        stmt = self._insert(conn, resources)
        new = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=[resources.c[name] for name in _KEY_COLUMNS],
            set_={name: new[name] for name in _UPDATED_COLUMNS},
            where=sa.or_(resources.c.rv.is_(None), new.rv.is_(None), resources.c.rv < new.rv),
        )

    def _checkpoint_statement(self, conn: AsyncConnection) -> Any:
        stmt = self._insert(conn, sync_state)
        new = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=[sync_state.c.cluster, sync_state.c.group, sync_state.c.version, sync_state.c.resource],
            set_={"kind": new.kind, "namespaced": new.namespaced, "resource_version": new.resource_version,
                  "synced_at": new.synced_at},
        )

    async def purge(self, cluster: str, resource: Resource | None = None) -> int:
        """Delete a cluster's rows (of one resource, or all) and their checkpoints; the row count."""
        where_rows = [resources.c.cluster == cluster]
        where_state = [sync_state.c.cluster == cluster]
        if resource is not None:
            where_rows += [resources.c.group == resource.group, resources.c.version == resource.version,
                           resources.c.resource == resource.plural]
            where_state += [sync_state.c.group == resource.group, sync_state.c.version == resource.version,
                            sync_state.c.resource == resource.plural]
        async with self._transaction() as conn:
            result = await conn.execute(sa.delete(resources).where(*where_rows))
            await conn.execute(sa.delete(sync_state).where(*where_state))
        return int(result.rowcount or 0)

    # -- reads ------------------------------------------------------------------------------

    async def read_state(self, cluster: str, resource: Resource) -> tuple[dict[str, RV], str]:
        """What a restarted informer is seeded with: key → RV of every stored row of this
        cluster and resource, and the checkpoint RV ("" if none)."""
        where = [resources.c.cluster == cluster, resources.c.group == resource.group,
                 resources.c.version == resource.version, resources.c.resource == resource.plural]
        known: dict[str, RV] = {}
        async with self.engine.connect() as conn:
            rows = await conn.stream(sa.select(resources.c.namespace, resources.c.name, resources.c.resource_version,
                                               resources.c.rv).where(*where))
            async for namespace, name, text, number in rows:
                known[f"{namespace}/{name}" if namespace else name] = number if number is not None else text
            checkpoint = (await conn.execute(
                sa.select(sync_state.c.resource_version).where(
                    sync_state.c.cluster == cluster, sync_state.c.group == resource.group,
                    sync_state.c.version == resource.version, sync_state.c.resource == resource.plural))).scalar()
        return known, str(checkpoint or "")

    async def get(self, cluster: str, resource: Resource, name: str, namespace: str = "") -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            value = (await conn.execute(sa.select(resources.c.object).where(
                resources.c.cluster == cluster, resources.c.group == resource.group,
                resources.c.version == resource.version, resources.c.resource == resource.plural,
                resources.c.namespace == (namespace or ""), resources.c.name == name))).scalar()
        return cast("dict[str, Any] | None", value)

    async def objects(self, cluster: str, resource: Resource) -> dict[str, dict[str, Any]]:
        """Every stored object of one cluster and resource, by key (for checks and exports)."""
        out: dict[str, dict[str, Any]] = {}
        async with self.engine.connect() as conn:
            rows = await conn.stream(sa.select(resources.c.namespace, resources.c.name, resources.c.object).where(
                resources.c.cluster == cluster, resources.c.group == resource.group,
                resources.c.version == resource.version, resources.c.resource == resource.plural))
            async for namespace, name, obj in rows:
                out[f"{namespace}/{name}" if namespace else name] = obj
        return out

    async def mirrored(self) -> dict[str, list[tuple[Resource, str]]]:
        """Per cluster, the resources with a checkpoint and that checkpoint's RV."""
        out: dict[str, list[tuple[Resource, str]]] = {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(sync_state).order_by(sync_state.c.cluster, sync_state.c.group,
                                                                     sync_state.c.resource))
            for row in rows:
                out.setdefault(row.cluster, []).append(
                    (Resource(row.group, row.version, row.resource, bool(row.namespaced), row.kind),
                     row.resource_version))
        return out

    async def count(self, cluster: str | None = None) -> int:
        stmt = sa.select(sa.func.count()).select_from(resources)
        if cluster is not None:
            stmt = stmt.where(resources.c.cluster == cluster)
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar() or 0)


_DELETE_BY_KEY = sa.delete(resources).where(
    resources.c.cluster == sa.bindparam("c"), resources.c.group == sa.bindparam("g"),
    resources.c.version == sa.bindparam("v"), resources.c.resource == sa.bindparam("r"),
    resources.c.namespace == sa.bindparam("ns"), resources.c.name == sa.bindparam("n"))


def _check_sqlite_path(database: str | None) -> None:
    # aiosqlite leaves its thread behind when a connect fails: refuse a path that cannot work first.
    if database in (None, "", ":memory:"):
        return
    parent = os.path.dirname(os.path.abspath(str(database)))
    if not os.path.isdir(parent):
        raise StorageError(f"the SQLite database's directory {parent} does not exist")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _sqlite_transactions(engine: AsyncEngine, *, file_backed: bool, busy_timeout_ms: int) -> None:
    """Explicit BEGIN for every transaction, WAL for a file, a busy timeout."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if file_backed:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def is_connection_error(error: BaseException) -> bool:
    """Whether a driver error means "the database is not reachable" (retry) rather than
    "this statement is wrong" (a bug or bad data)."""
    if isinstance(error, StorageUnavailableError | OSError | TimeoutError | ConnectionError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, exc.OperationalError | exc.InterfaceError):
            return True
        orig = getattr(error, "orig", None)
        return isinstance(orig, OSError | ConnectionError | TimeoutError) or (
            type(orig).__name__ in _CONNECTION_ERROR_NAMES)
    return isinstance(error, exc.TimeoutError | exc.DisconnectionError)


# asyncpg's and PostgreSQL's "the server went away" errors, by name (no import of asyncpg
# here: it is only installed with the postgres extra).
_CONNECTION_ERROR_NAMES = frozenset((
    "ConnectionDoesNotExistError", "ConnectionFailureError", "CannotConnectNowError", "AdminShutdownError",
    "CrashShutdownError", "InterfaceError", "ConnectionRejectionError", "TooManyConnectionsError",
    "InternalClientError",
))


class _Transaction:
    """`async with storage._transaction() as conn`: one transaction; driver errors become
    `StorageUnavailableError` / `StorageError`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._context: Any = None

    async def __aenter__(self) -> AsyncConnection:
        self._context = self._engine.begin()
        try:
            conn: AsyncConnection = await self._context.__aenter__()
        except Exception as error:
            raise _wrap(error) from error
        return conn

    async def __aexit__(self, exc_type: Any, exc_value: BaseException | None, tb: Any) -> None:
        try:
            await self._context.__aexit__(exc_type, exc_value, tb)
        except Exception as error:
            if error is not exc_value:  # the commit or rollback itself failed
                raise _wrap(error) from error
        if isinstance(exc_value, Exception) and not isinstance(exc_value, StorageError):
            raise _wrap(exc_value) from exc_value


def _wrap(error: BaseException) -> StorageError:
    if isinstance(error, StorageError):
        return error
    cls = StorageUnavailableError if is_connection_error(error) else StorageError
    return cls(f"{type(error).__name__}: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    # A driver's message can quote the statement's parameters (an object body): keep its first line.
    text = str(getattr(error, "orig", None) or error)
    return text.splitlines()[0][:300] if text else type(error).__name__


def iter_keys(objs: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """The `ns/name` keys of objects, as the storage forms them."""
    for obj in objs:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or ""
        yield f"{namespace}/{meta['name']}" if namespace else str(meta["name"])
