"""SQLite: the zero-setup store for one machine.

WAL mode and ``synchronous=NORMAL`` keep commits cheap; every write
transaction starts with ``BEGIN IMMEDIATE`` so writers queue on the busy
timeout instead of failing half-way. Each thread has its own connection.
Workers in this process are woken directly when work is queued; workers in
other processes watch a counter in a small file beside the database
(``<file>-wake``, mapped into memory) that every commit queueing work bumps, so
they wake within milliseconds without a query.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from legato.engine.clock import Clock
from legato.errors import (
    ConfigError,
    DatabaseUnavailableError,
    ParamError,
    SchemaVersionError,
    StoreError,
)
from legato.store.base import Tx
from legato.store.counting import COUNTS
from legato.store.queries import check_schema_version, load_queries, migration_files
from legato.store.sql import SQLStore

__all__ = ["SQLiteStore"]

_BUSY_TIMEOUT_MS = 30_000
#: how soon an idle worker first looks at the shared wake-up counter, and how
#: seldom at most (seconds): other processes' work is seen within that
_FIRST_LOOK = 0.001
_LAST_LOOK = 0.02
_CACHED_STATEMENTS = 1024


class _Wakeup:
    """Per-file wake-up for workers in this process."""

    _by_path: dict[str, _Wakeup] = {}
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.generation = 0

    @classmethod
    def for_path(cls, path: str) -> _Wakeup:
        with cls._lock:
            return cls._by_path.setdefault(path, cls())

    def notify(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        with self.cond:
            if self.generation == seen:
                self.cond.wait(timeout)
            return self.generation != seen


class _SharedWake:
    """A counter in ``<database>-wake`` that processes on this machine bump after a commit
    that queued work, and watch to wake: a memory read per look, no query, no lock."""

    _SIZE = 8

    def __init__(self, path: str) -> None:
        self.path = path + "-wake"
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()
        self._failed = False

    def _mapped(self) -> mmap.mmap | None:
        if self._map is not None or self._failed:
            return self._map
        with self._lock:
            if self._map is None and not self._failed:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                    try:
                        if os.fstat(fd).st_size < self._SIZE:
                            os.ftruncate(fd, self._SIZE)
                        self._map = mmap.mmap(fd, self._SIZE)
                    finally:
                        os.close(fd)
                except OSError:
                    self._failed = True  # a folder we cannot write: workers poll instead
        return self._map

    def value(self) -> int:
        mapped = self._mapped()
        try:
            return 0 if mapped is None else int(struct.unpack_from("<Q", mapped, 0)[0])
        except ValueError:  # closed by another thread meanwhile
            return 0

    def bump(self) -> None:
        mapped = self._mapped()
        if mapped is not None:
            # Two bumps at once may count as one: the value still changes, which is
            # all a watcher looks for.
            with suppress(ValueError):
                struct.pack_into("<Q", mapped, 0, (self.value() + 1) % 2**64)

    def close(self) -> None:
        with self._lock:
            if self._map is not None:
                with suppress(ValueError, BufferError):
                    self._map.close()
                self._map = None


class _SQLiteTx(Tx):
    def __init__(self, conn: sqlite3.Connection | sqlite3.Cursor, queries: dict[str, str]) -> None:
        super().__init__()
        self.conn = conn
        self.queries = queries

    def one(self, query: str, /, **params: Any) -> dict[str, Any] | None:
        COUNTS.statement()
        cur = self.conn.execute(self.queries[query], params)
        row = cur.fetchone()
        if row is not None:
            cur.fetchall()  # finish the statement so RETURNING rows are all applied
        return None if row is None else dict(row)

    def all(self, query: str, /, **params: Any) -> list[dict[str, Any]]:
        COUNTS.statement()
        return [dict(r) for r in self.conn.execute(self.queries[query], params).fetchall()]

    def run(self, query: str, /, **params: Any) -> int:
        COUNTS.statement()
        return self.conn.execute(self.queries[query], params).rowcount

    def many(self, query: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            COUNTS.statement(len(rows))
            self.conn.executemany(self.queries[query], rows)

    def insert_rows(self, query: str, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start : start + _ROWS_PER_INSERT]
            statement, names = _repeated(self.queries[query], len(chunk))
            COUNTS.statement()
            self.conn.execute(statement, [row[name] for row in chunk for name in names])

    def savepoint(self, name: str) -> None:
        COUNTS.statement()
        self.conn.execute(f'SAVEPOINT "{_identifier(name)}"')

    def rollback_to(self, name: str) -> None:
        COUNTS.statement()
        self.conn.execute(f'ROLLBACK TO "{_identifier(name)}"')

    def select(self, statement: str, /, **params: Any) -> list[dict[str, Any]]:
        COUNTS.statement()
        return [dict(r) for r in self.conn.execute(statement, params).fetchall()]


#: rows per INSERT of :meth:`_SQLiteTx.insert_rows`, far below SQLite's limit on
#: bound values (32,766) for the widest row
_ROWS_PER_INSERT = 500


@functools.lru_cache(maxsize=64)
def _repeated(text: str, count: int) -> tuple[str, tuple[str, ...]]:
    """A one-row ``INSERT ... VALUES (...)`` made to insert ``count`` rows, and the
    names of the values each row binds, in order."""
    match = re.fullmatch(r"(.*\bVALUES)\s*(\(.*\))", text, re.DOTALL)
    if match is None:
        raise ValueError(f"not a one-row INSERT ... VALUES: {text[:60]!r}")
    head, row = match.groups()
    names = tuple(re.findall(r":(\w+)", row))
    values = re.sub(r":\w+", "?", row)
    return f"{head} {', '.join([values] * count)}", names


def _identifier(name: str) -> str:
    """A savepoint's name, one of the store's own (never a value from outside)."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a savepoint name: {name!r}")
    return name


class SQLiteStore(SQLStore):
    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        max_payload_bytes: int | None = None,
        migrate: bool = True,
    ) -> None:
        super().__init__(clock=clock, max_payload_bytes=max_payload_bytes)
        self.path = (
            str(Path(path).expanduser().resolve()) if str(path) != ":memory:" else ":memory:"
        )
        if self.path == ":memory:":
            raise ConfigError("SQLite ':memory:' cannot be shared by workers; give a file path")
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise ConfigError(
                f"cannot open SQLite database {self.path}: folder {parent} does not exist"
            )
        self.url = f"sqlite:///{self.path}"
        self._queries = load_queries("sqlite")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._wakeup = _Wakeup.for_path(self.path)
        self._shared_wake = _SharedWake(self.path)
        self._closed = False
        #: only a store that may migrate may create the file; readers never do
        self._create = migrate
        if migrate:
            self.migrate()
        else:
            if not Path(self.path).is_file():
                raise SchemaVersionError(
                    f"no legato database at {self.url} (no such file); "
                    f"create it with: legato db upgrade --url {self.url}"
                )
            self._check_schema()

    # -- connections and transactions -----------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("the store is closed")
            try:
                conn = sqlite3.connect(
                    self.path if self._create else f"{Path(self.path).as_uri()}?mode=rw",
                    timeout=_BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                    uri=not self._create,
                    # Every named query, each claim batch size and each executemany
                    # stays prepared: the default 128 is fewer than a worker uses.
                    cached_statements=_CACHED_STATEMENTS,
                )
                conn.row_factory = sqlite3.Row
                _set_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from None
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Tx]:
        conn = self._conn()
        tx = _SQLiteTx(conn, self._queries)
        self._local.seen = self._wakeup.generation
        self._local.seen_shared = self._shared_wake.value()
        if write:
            self.checkpoint("begin")  # about to queue for the write lock
            self._begin(conn)
        else:
            conn.execute("BEGIN")  # a read snapshot; WAL lets it run beside writers
        try:
            yield tx
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            if _passing(exc):
                raise DatabaseUnavailableError(f"SQLite database {self.path}: {exc}") from None
            raise StoreError(f"SQLite refused the operation: {exc}") from None
        except sqlite3.Error as exc:  # mapped here, as PostgreSQL's are in its store
            conn.execute("ROLLBACK")
            raise StoreError(f"SQLite refused the operation: {exc}") from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _passing(exc):
                raise DatabaseUnavailableError(f"SQLite commit failed: {exc}") from None
            raise StoreError(f"SQLite commit failed: {exc}") from None
        COUNTS.round_trip()  # BEGIN
        COUNTS.commit()
        tx.committed()
        if tx.wakes_workers:
            self._wakeup.notify()
            self._shared_wake.bump()

    @contextmanager
    def _joined(self, conn: Any) -> Iterator[Tx]:
        if not isinstance(conn, sqlite3.Connection):
            raise ParamError(
                f"conn= takes a sqlite3 connection to {self.path}, got {type(conn).__name__}"
            )
        self._check_joined(conn)
        # No transaction to join (autocommit mode): the write gets one of its own.
        own = not conn.in_transaction and (
            getattr(conn, "autocommit", None) is True
            or (getattr(conn, "autocommit", -1) == -1 and conn.isolation_level is None)
        )
        cur = conn.cursor()
        cur.row_factory = sqlite3.Row
        try:
            if own:
                self._begin(conn)
            elif not conn.in_transaction:
                # The caller's transaction, begun now (it would have been at its next
                # write), taking the write lock at once rather than failing half-way.
                cur.execute("BEGIN IMMEDIATE")
            cur.execute("SAVEPOINT legato_write")
            tx = _SQLiteTx(cur, self._queries)
            try:
                yield tx
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled it all back already
                    cur.execute("ROLLBACK TO legato_write")
                    cur.execute("RELEASE legato_write")
                    if own:
                        cur.execute("ROLLBACK")
                raise
            cur.execute("RELEASE legato_write")
            if own:
                cur.execute("COMMIT")
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and _passing(exc):
                raise DatabaseUnavailableError(f"SQLite database {self.path}: {exc}") from None
            raise StoreError(f"SQLite refused the operation: {exc}") from None
        finally:
            cur.close()
        if own:
            tx.committed()
            if tx.wakes_workers:
                self._wakeup.notify()

    def _check_joined(self, conn: sqlite3.Connection) -> None:
        """Refuse a connection to another file than this store's."""
        try:
            rows = conn.execute("PRAGMA database_list").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"conn=: cannot read the connection's database: {exc}") from None
        files = [str(row[2]) for row in rows if row[1] == "main"]
        found = files[0] if files else ""
        if not found or str(Path(found).resolve()) != self.path:
            raise ParamError(
                f"conn= is connected to {found or 'a database in memory'!r}, not to "
                f"{self.path} where this client keeps its runs"
            )

    def _begin(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000 * 2
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise StoreError(f"SQLite: {exc}") from None
                if time.monotonic() > deadline:
                    raise DatabaseUnavailableError(
                        f"SQLite database {self.path} stayed locked: {exc}"
                    ) from None
                time.sleep(0.01)

    def wait_for_work(self, timeout: float) -> bool:
        # Wake for anything queued since this thread's last transaction began: in this
        # process (a condition) or in another (the shared counter, looked at often at
        # first, then less often while nothing happens).
        seen = getattr(self._local, "seen", self._wakeup.generation)
        seen_shared = getattr(self._local, "seen_shared", self._shared_wake.value())
        deadline = time.monotonic() + max(timeout, 0.0)
        pause = _FIRST_LOOK
        woke = False
        while True:
            if self._shared_wake.value() != seen_shared:
                woke = True
                break
            left = deadline - time.monotonic()
            if left <= 0 or self._closed:
                break
            if self._wakeup.wait(seen, min(pause, left)):
                woke = True
                break
            pause = min(pause * 1.5, _LAST_LOOK)
        self._local.seen = self._wakeup.generation
        self._local.seen_shared = self._shared_wake.value()
        return woke

    def close(self) -> None:
        self._closed = True
        self._shared_wake.close()
        with self._conns_lock:
            for conn in self._conns:
                with suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()
        self._local = threading.local()

    # -- value conversion -------------------------------------------------------

    def _ts(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(value, UTC)

    # -- schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        conn = self._conn()
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'legato_migrations'"
        ).fetchone()
        if not exists:
            return 0
        row = conn.execute("SELECT MAX(version) FROM legato_migrations").fetchone()
        return row[0] or 0

    def migrate(self) -> list[int]:
        migrations = migration_files("sqlite")
        conn = self._conn()
        if self.schema_version() == len(migrations):
            return []
        applied = []
        self._begin(conn)
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS legato_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            current = self.schema_version()
            if current > len(migrations):
                raise SchemaVersionError(
                    f"database {self.path} has schema version {current}, newer than this "
                    f"legato ({len(migrations)}); upgrade legato"
                )
            for version, name, sql in migrations[current:]:
                for statement in _statements(sql):
                    try:
                        conn.execute(statement)
                    except sqlite3.OperationalError as exc:
                        raise _migration_error(self.path, version, name, exc) from None
                conn.execute(
                    "INSERT INTO legato_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
                applied.append(version)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return applied

    def _check_schema(self) -> None:
        check_schema_version(self.url, self.schema_version(), len(migration_files("sqlite")))


def _migration_error(
    path: str, version: int, name: str, exc: sqlite3.OperationalError
) -> StoreError:
    """Why a migration failed; what to do when this SQLite lacks a part legato needs."""
    text = f"migrating {path} to schema version {version} ({name}) failed: {exc}"
    if "fts5" in str(exc) or "trigram" in str(exc):
        text += (
            f"; legato's text search needs SQLite 3.34 or later built with FTS5 (this "
            f"Python's is SQLite {sqlite3.sqlite_version}): use a Python whose sqlite3 has "
            "it, or PostgreSQL"
        )
    return StoreError(text)


def _set_wal(conn: sqlite3.Connection) -> None:
    """WAL mode. Switching needs a moment alone with the file, which SQLite does not
    wait for (no busy handler), so a connection opened while another migrates retries."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _passing(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _passing(exc: sqlite3.OperationalError) -> bool:
    """Locked, busy, or an I/O hiccup: may pass by itself (a malformed value will not)."""
    text = str(exc).lower()
    return any(word in text for word in ("locked", "busy", "disk i/o", "unable to open"))


def _statements(script: str) -> Iterator[str]:
    """Split a script into complete statements, as SQLite itself parses them."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()
