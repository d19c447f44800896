"""The search migration on a database that already holds runs, and on a SQLite that cannot
take it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from legato import Client, StoreError
from legato.store.queries import migration_files
from legato.store.sqlite import store as sqlite_store

#: the schema version before run search
BEFORE = 6

SPEC = '{"name": "old", "version": "1", "steps": []}'
RUN = "01a23b3d-0000-7000-8000-000000000001"


def _old_database(url: str) -> None:
    """A database at schema 6 holding one finished run with tags, params, outputs, error."""
    if url.startswith("sqlite"):
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        with lite as conn:
            conn.execute(
                "CREATE TABLE legato_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            for version, name, sql in migration_files("sqlite")[:BEFORE]:
                for statement in sqlite_store._statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO legato_migrations VALUES (?, ?, ?)", (version, name, time.time())
                )
            conn.execute("INSERT INTO workflow_specs VALUES ('h', 'old', '1', ?, 0)", (SPEC,))
            conn.execute(
                "INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params,"
                " outputs, error, tags, root_run_id, created_at, finished_at, updated_at)"
                " VALUES (?, 'old', '1', 'h', 'failed', '{\"order\": \"ord-77\"}', NULL,"
                ' \'{"type": "E", "message": "disk full"}\', \'{"env": "prod"}\', ?,'
                " ?, ?, ?)",
                (RUN, RUN, time.time(), time.time(), time.time()),
            )
        lite.close()
        return
    with psycopg.connect(url) as pg:
        pg.execute(
            "CREATE TABLE legato_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in migration_files("postgres")[:BEFORE]:
            pg.execute(sql.encode())
            pg.execute(
                "INSERT INTO legato_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
        pg.execute("INSERT INTO workflow_specs VALUES ('h', 'old', '1', %s, now())", (SPEC,))
        pg.execute(
            "INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params,"
            " outputs, error, tags, root_run_id, created_at, finished_at, updated_at)"
            " VALUES (%s, 'old', '1', 'h', 'failed', '{\"order\": \"ord-77\"}', NULL,"
            ' \'{"type": "E", "message": "disk full"}\', \'{"env": "prod"}\', %s,'
            " now(), now(), now())",
            (RUN, RUN),
        )


def test_runs_stored_before_the_search_migration_are_found(empty_url: str) -> None:
    if empty_url.startswith("sqlite"):
        Path(empty_url.removeprefix("sqlite:///")).touch()
    _old_database(empty_url)
    with Client(empty_url) as client:  # migrates
        assert client.store.schema_version() == len(migration_files("sqlite"))
        for filters in (
            {"tags": {"env": "prod"}},
            {"text": "ord-77"},
            {"text": "disk full"},
            {"status": "failed", "workflow": "old"},
        ):
            assert [run.id for run in client.search(**filters)] == [RUN], filters
        client.store.clock.advance(2 * 86400)
        assert client.prune("1d").runs == 1
        assert client.search().runs == []


def test_a_sqlite_without_a_module_the_schema_needs_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    Client(url).close()
    missing = (99, "needs_a_module", "CREATE VIRTUAL TABLE x USING nosuch_fts5 (a);")
    files = [*migration_files("sqlite"), missing]
    monkeypatch.setattr(sqlite_store, "migration_files", lambda dialect: files)
    with pytest.raises(StoreError) as info:
        Client(url)
    message = str(info.value)
    assert "schema version 99 (needs_a_module) failed: no such module: nosuch_fts5" in message
    assert "text search needs SQLite 3.34 or later built with FTS5" in message
    conn = sqlite3.connect(tmp_path / "legato.db")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "x" not in tables  # nothing of the failed migration is left
