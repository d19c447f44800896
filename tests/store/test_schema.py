"""Schema: migrations reproduce schema.sql, queries agree, migrate is safe and guarded."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from legato import Client, SchemaVersionError
from legato.store import open_store
from legato.store.queries import load_queries, migration_files

from .helpers import sql

MIGRATIONS = len(migration_files("sqlite"))


# -- migrations reproduce schema.sql ----------------------------------------------------


# -- the migrations are the one source of the schema ----------------------------------------
#
# Each query the store runs is compiled against a database the migrations built,
# so a query naming a column or table no migration made fails here, not in use.

TABLES = {
    "workflow_specs",
    "runs",
    "step_runs",
    "events",
    "workers",
    "scope_counters",
    "signals",
    "signal_channels",
    "task_defaults",
    "definitions",
    "run_tags",
    "maintenance",
    "step_logs",
}


def test_every_sqlite_query_compiles_against_the_migrated_schema(tmp_path: Path) -> None:
    path = tmp_path / "migrated.db"
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables >= TABLES
        for name, query in load_queries("sqlite").items():
            params = dict.fromkeys(_sqlite_params(query))
            try:
                conn.execute("EXPLAIN " + query, params)
            except sqlite3.Error as exc:
                raise AssertionError(f"{name}: {exc}") from None
    finally:
        conn.close()


def test_every_postgres_query_compiles_against_the_migrated_schema(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert tables >= TABLES
        for name, query in load_queries("postgres").items():
            text = re.sub(r"\{[a-z_]+\}", "1", query)  # the literals the store writes in
            params = dict.fromkeys(re.findall(r"%\(([a-z_][a-z0-9_]*)\)s", text))
            try:
                conn.execute("EXPLAIN " + text, params)
            except psycopg.Error as exc:
                raise AssertionError(f"{name}: {exc}") from None
            finally:
                conn.rollback()


# -- queries ----------------------------------------------------------------------------


def _sqlite_params(query: str) -> set[str]:
    return set(re.findall(r"(?<![:\w]):([a-z_][a-z0-9_]*)", query))


def _pg_params(query: str) -> set[str]:
    """Bound parameters, and the ``{name}`` literals the store writes into the statement."""
    bound = set(re.findall(r"%\(([a-z_][a-z0-9_]*)\)s", query))
    return bound | set(re.findall(r"\{([a-z_]+)\}", query))


#: queries run by ``Tx.insert_rows``: any number of rows in one statement
INSERT_ROWS = {"insert_events", "insert_steps"}


def test_both_dialects_define_the_same_queries() -> None:
    sqlite_queries = load_queries("sqlite")
    pg_queries = load_queries("postgres")
    assert sorted(sqlite_queries) == sorted(pg_queries)
    for name, text in sqlite_queries.items():
        lite, pg = _sqlite_params(text), _pg_params(pg_queries[name])
        if name in INSERT_ROWS:  # PostgreSQL reads the rows from JSON; SQLite repeats one
            assert pg == {"rows"} and text.rstrip().endswith(")"), name
            continue
        # PostgreSQL reads the time from legato_now(), so it may leave :now out
        assert pg <= lite, f"{name}: PostgreSQL takes {pg - lite} that SQLite does not"
        assert lite - pg <= {"now"}, f"{name}: SQLite takes {lite - pg} that PostgreSQL does not"
        assert text.strip() and not text.rstrip().endswith(";")


def test_every_query_the_store_runs_is_defined() -> None:
    folder = Path(__file__).parents[2] / "src" / "legato" / "store"
    text = "".join(path.read_text() for path in folder.glob("*.py"))
    used = set(re.findall(r"\.(?:one|all|run|many|send|insert_rows)\(\s*\"([a-z_]+)\"", text))
    used |= set(re.findall(r"\"(lock_runs(?:_nowait)?|claim_(?:tree_)?steps)\"", text))
    assert len(used) > 15
    assert INSERT_ROWS | {"insert_runs", "complete_runs"} <= used
    assert used <= set(load_queries("sqlite"))


# -- migrate ----------------------------------------------------------------------------


def test_migrate_on_an_empty_database_then_again(empty_url: str) -> None:
    with pytest.raises(SchemaVersionError) as info:
        open_store(empty_url, migrate=False)
    message = str(info.value)
    if empty_url.startswith("sqlite"):  # the file does not even exist, and is not created
        assert message == (
            f"no legato database at {empty_url.replace('sqlite:///', 'sqlite:///', 1)} "
            f"(no such file); create it with: legato db upgrade --url {empty_url}"
        )
        assert not Path(empty_url.removeprefix("sqlite:///")).exists()
        Path(empty_url.removeprefix("sqlite:///")).touch()  # an empty file: no schema
        with pytest.raises(SchemaVersionError) as info:
            open_store(empty_url, migrate=False)
        message = str(info.value)
    assert message == (
        f"{empty_url} has no legato schema (empty, or another program's database); "
        f"create it with: legato db upgrade --url {empty_url}"
    )
    store = open_store(empty_url)
    try:
        assert store.schema_version() == MIGRATIONS
        assert store.migrate() == []
        assert store.schema_version() == MIGRATIONS
    finally:
        store.close()
    again = open_store(empty_url, migrate=False)
    try:
        assert again.schema_version() == MIGRATIONS
    finally:
        again.close()


def test_migrate_applies_each_migration_once(empty_url: str) -> None:
    with Client(empty_url) as client:
        store = client.store
        assert store.migrate() == []
        rows = sql(store, "SELECT version, name FROM legato_migrations ORDER BY version")
        assert rows == [(v, n) for v, n, _ in migration_files(store.dialect)]  # type: ignore[attr-defined]


def test_concurrent_migrations_in_threads(empty_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            barrier.wait(timeout=10)
            open_store(empty_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with Client(empty_url) as client:
        assert sql(client.store, "SELECT COUNT(*) FROM legato_migrations") == [(MIGRATIONS,)]


def test_concurrent_migrations_in_processes(empty_url: str) -> None:
    code = "import sys; from legato.store import open_store; open_store(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, empty_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with Client(empty_url) as client:
        assert sql(client.store, "SELECT COUNT(*) FROM legato_migrations") == [(MIGRATIONS,)]
        assert client.store.schema_version() == MIGRATIONS


def test_a_newer_schema_is_refused(db_url: str) -> None:
    with Client(db_url) as client:
        if client.store.dialect == "sqlite":  # type: ignore[attr-defined]
            insert = "INSERT INTO legato_migrations VALUES (99, 'from_the_future', 0)"
        else:
            insert = "INSERT INTO legato_migrations (version, name) VALUES (99, 'from_the_future')"
        sql(client.store, insert)
    with pytest.raises(SchemaVersionError, match="has schema version 99, newer than this legato"):
        Client(db_url)
    with pytest.raises(SchemaVersionError, match="has schema version 99, newer than this legato"):
        Client(db_url, migrate=False)


def test_an_older_schema_is_named_with_the_command_that_upgrades_it(db_url: str) -> None:
    with Client(db_url) as client:
        sql(client.store, f"DELETE FROM legato_migrations WHERE version = {MIGRATIONS}")
        url = client.url
    with pytest.raises(SchemaVersionError) as info:
        Client(db_url, migrate=False)
    assert str(info.value) == (
        f"{url} has schema version {MIGRATIONS - 1}, this legato needs {MIGRATIONS}; "
        f"upgrade it with: legato db upgrade --url {url}"
    )
