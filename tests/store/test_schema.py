"""Schema: migrations reproduce schema.sql, queries agree, migrate is safe and guarded."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from legato import Client, SchemaVersionError
from legato.store import open_store
from legato.store.queries import load_queries, migration_files, read_sql

from .helpers import pg_url_for, sql

MIGRATIONS = len(migration_files("sqlite"))


# -- migrations reproduce schema.sql ----------------------------------------------------


def _normalise(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").replace("( ", "(").replace(" )", ")").strip()


def sqlite_catalog(path: str) -> list[tuple[object, ...]]:
    """Tables by their columns and keys, indexes by their SQL.

    Tables are compared column by column, not by their CREATE text: ``ALTER
    TABLE ... ADD COLUMN`` appends to the stored text where a fresh script
    cannot put a column (after the table's constraints).
    """
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' AND tbl_name != 'legato_migrations' ORDER BY name"
        ).fetchall()
        catalog: list[tuple[object, ...]] = []
        for kind, name, table, text in rows:
            if kind != "table":
                catalog.append((kind, name, table, _normalise(text)))
                continue
            columns = conn.execute(f"PRAGMA table_xinfo({name})").fetchall()
            keys = conn.execute(f"PRAGMA foreign_key_list({name})").fetchall()
            indexes = conn.execute(f"PRAGMA index_list({name})").fetchall()
            unique = sorted(
                tuple(c[2] for c in conn.execute(f"PRAGMA index_info({ix[1]})").fetchall())
                for ix in indexes
                if ix[2] and ix[3] in ("u", "pk")
            )
            catalog.append((kind, name, table, tuple(columns), tuple(keys), tuple(unique)))
    finally:
        conn.close()
    return catalog


def test_sqlite_migrations_reproduce_schema_sql(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    open_store(f"sqlite:///{migrated}").close()
    scripted = tmp_path / "scripted.db"
    conn = sqlite3.connect(scripted)
    conn.executescript(read_sql("sqlite", "schema.sql"))
    conn.close()
    catalog = sqlite_catalog(str(migrated))
    assert {entry[1] for entry in catalog if entry[0] == "table"} == {
        "workflow_specs",
        "runs",
        "step_runs",
        "events",
        "workers",
    }
    assert catalog == sqlite_catalog(str(scripted))


PG_CATALOG = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, is_nullable,
               column_default, is_identity, identity_generation
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name != 'legato_migrations'
        ORDER BY table_name, ordinal_position""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename != 'legato_migrations'
        ORDER BY indexname""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname != 'legato_migrations'
        ORDER BY c.relname, k.conname""",
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' ORDER BY p.proname""",
}


def pg_catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {key: conn.execute(query).fetchall() for key, query in PG_CATALOG.items()}


def test_postgres_migrations_reproduce_schema_sql(pg_admin: psycopg.Connection[Any]) -> None:
    names = [f"legato_schema_{uuid.uuid4().hex[:8]}_{i}" for i in range(2)]
    for name in names:
        pg_admin.execute(f'CREATE DATABASE "{name}"')
    try:
        migrated, scripted = (pg_url_for(name) for name in names)
        open_store(migrated).close()
        with psycopg.connect(scripted, autocommit=True) as conn:
            conn.execute(read_sql("postgres", "schema.sql").encode())
        catalog = pg_catalog(migrated)
        assert {row[0] for row in catalog["columns"]} == {
            "workflow_specs",
            "runs",
            "step_runs",
            "events",
            "workers",
        }
        assert [row[0] for row in catalog["functions"]] == ["legato_now"]
        assert len(catalog["indexes"]) >= 8
        assert catalog == pg_catalog(scripted)
    finally:
        for name in names:
            pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- queries ----------------------------------------------------------------------------


def _sqlite_params(query: str) -> set[str]:
    return set(re.findall(r"(?<![:\w]):([a-z_][a-z0-9_]*)", query))


def _pg_params(query: str) -> set[str]:
    """Bound parameters, and the ``{name}`` literals the store writes into the statement."""
    bound = set(re.findall(r"%\(([a-z_][a-z0-9_]*)\)s", query))
    return bound | set(re.findall(r"\{([a-z_]+)\}", query))


def test_both_dialects_define_the_same_queries() -> None:
    sqlite_queries = load_queries("sqlite")
    pg_queries = load_queries("postgres")
    assert sorted(sqlite_queries) == sorted(pg_queries)
    for name, text in sqlite_queries.items():
        lite, pg = _sqlite_params(text), _pg_params(pg_queries[name])
        # PostgreSQL reads the time from legato_now(), so it may leave :now out
        assert pg <= lite, f"{name}: PostgreSQL takes {pg - lite} that SQLite does not"
        assert lite - pg <= {"now"}, f"{name}: SQLite takes {lite - pg} that PostgreSQL does not"
        assert text.strip() and not text.rstrip().endswith(";")


def test_every_query_the_store_runs_is_defined() -> None:
    folder = Path(__file__).parents[2] / "src" / "legato" / "store"
    text = "".join(path.read_text() for path in folder.glob("*.py"))
    used = set(re.findall(r"\.(?:one|all|run|many)\(\s*\"([a-z_]+)\"", text))
    used |= set(re.findall(r"\"(lock_runs(?:_nowait)?|claim_(?:tree_)?steps)\"", text))
    assert len(used) > 15
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
