"""PostgreSQL: the store for many workers on many machines.

Connections come from a psycopg-pool pool. Claims use ``FOR UPDATE SKIP
LOCKED``; every transaction that queues work sends one ``NOTIFY`` that
sleeping workers ``LISTEN`` for. Time is the database's (``legato_now()``), so
workers with skewed clocks agree. A deadlock between two transactions
touching the same run is retried, never surfaced.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from legato.engine.clock import Clock
from legato.errors import (
    ConfigError,
    DatabaseUnavailableError,
    ParamError,
    SchemaVersionError,
    StoreError,
)
from legato.store.base import Pending, Tx
from legato.store.counting import COUNTS
from legato.store.queries import check_schema_version, load_queries, migration_files
from legato.store.sql import SQLStore, TransactionRetry

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import sql
    from psycopg.pq import TransactionStatus
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigError(
        "PostgreSQL support needs psycopg and psycopg-pool: pip install 'legato[postgres]'"
    ) from exc

__all__ = ["PostgresStore"]

CHANNEL = "legato_work"
_LOCK_KEY = 0x6C6567_61746F  # "legato": serialises migrations across processes


_LITERAL = re.compile(r"\{([a-z_]+)\}")


class _PgTx(Tx):
    """Named queries on one cursor; in a transaction of the store's own, in pipeline mode.

    In pipeline mode a statement whose result is not read at once (an
    ``executemany``, a :meth:`send`, the ``NOTIFY``) waits in the pipeline and
    goes with the next statement that must be answered, ``BEGIN`` with the
    first and the last writes with ``COMMIT``: one round trip for several.
    """

    def __init__(
        self,
        cur: psycopg.Cursor[Any],
        queries: dict[str, str],
        pipeline: psycopg.Pipeline | None = None,
    ) -> None:
        super().__init__()
        self.cur = cur
        self.queries = queries
        self.pipeline = pipeline
        #: statements sent, and how many of them have been answered (for the counts)
        self.sent = 0
        self.answered = 0
        if pipeline is None and cur.connection.info.transaction_status is TransactionStatus.IDLE:
            self.sent = -1  # psycopg sends BEGIN on its own before the first statement

    def execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        cur: psycopg.Cursor[Any] | None = None,
    ) -> None:
        """Every statement goes through here, counted; in a pipeline it waits to be sent."""
        COUNTS.statement(round_trips=0)
        if self.sent < 0:  # psycopg's BEGIN, answered before the statement is sent
            COUNTS.round_trip()
            self.sent = 0
        self.sent += 1
        (cur or self.cur).execute(statement, params, prepare=prepare)
        if self.pipeline is None:
            self.answered = self.sent
            COUNTS.round_trip()

    def answer(self) -> None:
        """Wait for the answers to everything sent so far: one round trip."""
        if self.answered >= self.sent:
            return
        COUNTS.round_trip()
        assert self.pipeline is not None
        self.pipeline.sync()
        self.answered = self.sent

    @property
    def begun(self) -> bool:
        return self.sent > 0

    def _statement(self, query: str, params: dict[str, Any]) -> Any:
        """The query, with its ``{name}`` placeholders filled in as integer literals."""
        text = self.queries[query]
        names = _literals(text)
        if not names:
            return text
        values = {name: int(params.pop(name)) for name in names}
        return _composed(text, tuple(sorted(values.items())))

    def _answered(
        self, statement: Any, params: dict[str, Any], prepare: bool | None = None
    ) -> None:
        self.execute(statement, params, prepare=prepare)
        if self.pipeline is not None:
            self.answer()

    def one(self, query: str, /, **params: Any) -> dict[str, Any] | None:
        self._answered(self._statement(query, params), params)
        return self.cur.fetchone() if self.cur.description else None

    def all(self, query: str, /, **params: Any) -> list[dict[str, Any]]:
        self._answered(self._statement(query, params), params)
        return self.cur.fetchall()

    def run(self, query: str, /, **params: Any) -> int:
        self._answered(self._statement(query, params), params)
        return self.cur.rowcount

    def many(self, query: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        COUNTS.statement(len(rows), round_trips=0)
        if self.sent < 0:
            COUNTS.round_trip()
            self.sent = 0
        self.sent += 1
        self.cur.executemany(self.queries[query], rows)
        if self.pipeline is None:
            COUNTS.round_trip()  # psycopg sends the rows in one pipeline of its own
            self.answered = self.sent

    def insert_rows(self, query: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.execute(self.queries[query], {"rows": json.dumps(rows, separators=(",", ":"))})

    def send(self, query: str, /, **params: Any) -> Pending:
        if self.pipeline is None:
            return super().send(query, **params)
        cur = self.cur.connection.cursor()
        self.execute(self._statement(query, params), params, cur=cur)
        return _PgPending(self, cur, self.sent)

    def savepoint(self, name: str) -> None:
        self.execute(_savepoint("SAVEPOINT", name))

    def rollback_to(self, name: str) -> None:
        self.execute(_savepoint("ROLLBACK TO SAVEPOINT", name))

    def select(self, statement: str, /, **params: Any) -> list[dict[str, Any]]:
        # Never prepared: a prepared statement may fall back to a plan made without
        # the values, and which index fits a search depends on them.
        self._answered(statement.encode(), params, prepare=False)
        return self.cur.fetchall()


class _PgPending(Pending):
    """A statement sent in the pipeline; its rows are read when first asked for."""

    def __init__(self, tx: _PgTx, cur: psycopg.Cursor[Any], seq: int) -> None:
        self._tx = tx
        self._cur = cur
        self._seq = seq
        self._fetched: list[dict[str, Any]] | None = None

    def rows(self) -> list[dict[str, Any]]:
        if self._fetched is None:
            if self._tx.answered < self._seq:
                self._tx.answer()
            self._fetched = self._cur.fetchall() if self._cur.description else []
            self._cur.close()
        return self._fetched


@functools.lru_cache(maxsize=256)
def _literals(text: str) -> frozenset[str]:
    """The ``{name}`` placeholders of a named query (read once per query)."""
    return frozenset(_LITERAL.findall(text))


# Both below are composed once into the statement's bytes: psycopg composes a
# ``Composed`` again on every execution.


@functools.lru_cache(maxsize=256)
def _composed(text: str, values: tuple[tuple[str, int], ...]) -> bytes:
    composed = sql.SQL(text).format(**{name: sql.Literal(value) for name, value in values})
    return composed.as_bytes(None)


@functools.lru_cache(maxsize=16)
def _savepoint(command: str, name: str) -> bytes:
    return sql.SQL(command + " {}").format(sql.Identifier(name)).as_bytes(None)


class PostgresStore(SQLStore):
    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        max_payload_bytes: int | None = None,
        migrate: bool = True,
        pool_size: int = 8,
        pipeline: bool | None = None,
    ) -> None:
        super().__init__(clock=clock, max_payload_bytes=max_payload_bytes)
        self.url = url
        #: run the store's own transactions in pipeline mode (fewer round trips);
        #: ``LEGATO_PG_PIPELINE=0`` turns it off
        self.pipeline = (
            os.environ.get("LEGATO_PG_PIPELINE", "1").strip().lower() not in ("0", "false", "no")
            if pipeline is None
            else pipeline
        )
        self._conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._queries = load_queries("postgres")
        self._listen_lock = threading.Lock()
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._closed = False
        #: callers' connections found to reach this database (``conn=``)
        self._joinable: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._dbname: str | None = None
        #: transactions run again after a deadlock or serialisation failure
        self.conflict_retries = 0
        reason = _connect_error(self._conninfo)  # fail fast, with the server's reason
        if reason is not None:
            raise StoreError(f"cannot connect to PostgreSQL at {_safe(url)}: {reason}")
        try:
            self._pool: ConnectionPool[Any] = ConnectionPool(
                self._conninfo,
                min_size=1,
                max_size=max(pool_size, 2),
                kwargs={"row_factory": dict_row, "autocommit": False},
                open=True,
                name="legato",
            )
            self._pool.wait(timeout=10)
        except Exception as exc:
            pool = getattr(self, "_pool", None)
            if pool is not None:
                pool.close(timeout=0)  # else it keeps reconnecting in the background
            cause = _connect_error(self._conninfo) or exc
            raise StoreError(f"cannot connect to PostgreSQL at {_safe(url)}: {cause}") from None
        if migrate:
            self.migrate()
        else:
            self._check_schema()

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Tx]:
        with (
            self._mapped_errors(),
            self._pool.connection() as conn,
            conn.pipeline() if self.pipeline else nullcontext() as pipeline,
            conn.cursor() as cur,
        ):
            tx = self._begun(cur, pipeline)
            yield tx
            if tx.wakes_workers:
                tx.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            if pipeline is None:
                if tx.begun:
                    conn.commit()
                    COUNTS.round_trip()
                    COUNTS.commit()
            elif tx.begun:
                # What still waits in the pipeline goes with the COMMIT and the Sync
                # that leaving pipeline mode sends: one round trip (psycopg's own
                # commit would send a Sync of its own first).
                cur.execute(b"COMMIT")
                COUNTS.commit()
            else:
                COUNTS.round_trip()  # the Sync that leaving pipeline mode sends
        tx.committed()

    @contextmanager
    def _joined(self, conn: Any) -> Iterator[Tx]:
        if not isinstance(conn, psycopg.Connection):
            raise ParamError(
                f"conn= takes a psycopg 3 connection (psycopg.Connection) to {_safe(self.url)}, "
                f"got {type(conn).__name__}"
            )
        state = conn.info.transaction_status
        if state is TransactionStatus.INERROR:
            raise StoreError(
                "conn=: the connection's transaction has failed; roll it back before "
                "writing through it"
            )
        if state not in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
            raise StoreError(
                f"conn=: the connection is {state.name.lower()}, not ready for a write"
            )
        own = state is TransactionStatus.IDLE and conn.autocommit  # no transaction to join
        with (
            self._mapped_errors(),
            conn.transaction() if own else nullcontext(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            self._check_joined(conn, cur)
            if not own:
                cur.execute("SAVEPOINT legato_write")  # begins the caller's, if none is open
            try:
                tx = self._begun(cur)
                yield tx
                if tx.wakes_workers:  # PostgreSQL sends it when the caller commits
                    tx.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            except BaseException:
                if not own and not conn.closed:
                    cur.execute("ROLLBACK TO SAVEPOINT legato_write")
                    cur.execute("RELEASE SAVEPOINT legato_write")
                raise
            if not own:
                cur.execute("RELEASE SAVEPOINT legato_write")
        if own:
            tx.committed()

    def _check_joined(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any]) -> None:
        """Refuse a connection to another database than this store's (checked once each)."""
        if conn in self._joinable:
            return
        if self._dbname is None:
            with self._pool.connection() as own:
                row = own.execute("SELECT current_database() AS db").fetchone()
                self._dbname = row["db"] if row else ""
        row = cur.execute("SELECT current_database() AS db").fetchone()
        if row is None or row["db"] != self._dbname:
            raise ParamError(
                f"conn= is connected to database {row['db'] if row else '?'!r}, not to "
                f"{self._dbname!r} where this client keeps its runs ({_safe(self.url)})"
            )
        self._joinable.add(conn)

    def _begun(self, cur: psycopg.Cursor[Any], pipeline: psycopg.Pipeline | None = None) -> _PgTx:
        """A transaction's named queries on ``cur``, its clock set (``legato_now()``)."""
        tx = _PgTx(cur, self._queries, pipeline)
        if self.clock.offset:
            tx.execute(
                "SELECT set_config('legato.clock_offset', %s, true)",
                (repr(float(self.clock.offset)),),
            )
        return tx

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """PostgreSQL's errors as legato's: the one place they are mapped."""
        try:
            yield
        except pg_errors.LockNotAvailable as exc:
            # A run's row was needed mid-way and another transaction held it (NOWAIT):
            # the unit has noted which, and the transaction runs again taking it first.
            raise TransactionRetry("a run row was locked; again, taking it first") from exc
        except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
            raise TransactionRetry("lost a deadlock or a serialisation race") from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseUnavailableError(f"PostgreSQL at {_safe(self.url)}: {exc}") from None
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL refused the operation: {exc}") from None

    def wait_for_work(self, timeout: float) -> bool:
        with self._listen_lock:
            if self._closed:
                return False
            try:
                if self._listen_conn is None or self._listen_conn.closed:
                    self._listen_conn = psycopg.connect(self._conninfo, autocommit=True)
                    self._listen_conn.execute(f"LISTEN {CHANNEL}")
                woke = any(True for _ in self._listen_conn.notifies(timeout=timeout, stop_after=1))
            except psycopg.Error:
                # No listener (database restarting): fall back to a plain wait.
                self._close_listener()
                time.sleep(timeout)
                return False
            if self._closed:  # closed while we waited: the waiter cleans up
                self._close_listener()
            return woke

    def _close_listener(self) -> None:
        if self._listen_conn is not None:
            self._listen_conn.close()
            self._listen_conn = None

    def close(self) -> None:
        self._closed = True
        if self._listen_lock.acquire(blocking=False):
            try:
                self._close_listener()
            finally:
                self._listen_lock.release()
        self._pool.close()

    # -- value conversion -------------------------------------------------------------

    def _ts(self, value: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def _json(self, value: Any) -> Any:
        return value  # psycopg parses jsonb already

    def _list(self, values: Sequence[str] | Sequence[int] | None) -> Any:
        return None if values is None else list(values)

    # -- schema -------------------------------------------------------------------------

    def schema_version(self) -> int:
        try:
            with self._pool.connection() as conn:
                row = conn.execute("SELECT to_regclass('legato_migrations') AS t").fetchone()
                if row is None or row["t"] is None:
                    return 0
                row = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) AS v FROM legato_migrations"
                ).fetchone()
                return int(row["v"]) if row else 0
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseUnavailableError(f"PostgreSQL at {_safe(self.url)}: {exc}") from None
        except psycopg.Error as exc:
            raise StoreError(f"reading the schema of {_safe(self.url)} failed: {exc}") from None

    def migrate(self) -> list[int]:
        migrations = migration_files("postgres")
        if self.schema_version() == len(migrations):
            return []
        applied = []
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS legato_migrations ("
                    "version integer PRIMARY KEY, name text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
                row = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) AS v FROM legato_migrations"
                ).fetchone()
                current = int(row["v"]) if row else 0
                if current > len(migrations):
                    raise SchemaVersionError(
                        f"database {_safe(self.url)} has schema version {current}, newer than "
                        f"this legato ({len(migrations)}); upgrade legato"
                    )
                for version, name, sql in migrations[current:]:
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO legato_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                    applied.append(version)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseUnavailableError(f"PostgreSQL at {_safe(self.url)}: {exc}") from None
        except psycopg.Error as exc:
            raise StoreError(f"migrating {_safe(self.url)} failed: {exc}") from None
        return applied

    def _check_schema(self) -> None:
        check_schema_version(
            _safe(self.url), self.schema_version(), len(migration_files("postgres"))
        )


def _connect_error(conninfo: str) -> str | None:
    """The server's own reason a connection fails; the pool only says it timed out."""
    try:
        psycopg.connect(conninfo, connect_timeout=5).close()
    except psycopg.Error as exc:
        return " ".join(str(exc).split())
    return None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
