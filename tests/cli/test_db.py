"""``legato db upgrade``: create the schema, then say there is nothing to do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from legato import Client
from legato.store.queries import migration_files

from .helpers import Invoke, assert_usage_error

LATEST = len(migration_files("sqlite"))


@pytest.fixture
def empty_pg_url(pg_admin: psycopg.Connection) -> Iterator[str]:
    name = f"legato_cli_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    info = pg_admin.info
    yield f"postgresql://{info.user}@{info.host}:{info.port}/{name}"
    pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_creates_a_fresh_sqlite_file(legato: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    url = f"sqlite:///{path}"
    result = legato("db", "upgrade", "--url", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"upgraded sqlite:///{path} to schema version {LATEST}"
    with Client(url, migrate=False) as client:  # refuses an outdated schema
        assert client.store.schema_version() == LATEST
        assert client.list_runs() == []
    again = legato("db", "upgrade", "--url", url)
    assert again.exit_code == 0
    assert again.stdout.strip() == f"sqlite:///{path} is already at schema version {LATEST}"


def test_upgrade_uses_legato_url_then_the_working_directory(
    legato: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert legato("db", "upgrade").exit_code == 0
    assert schema_version(tmp_path / "legato.db") == LATEST
    monkeypatch.setenv("LEGATO_URL", f"sqlite:///{tmp_path / 'from_env.db'}")
    result = legato("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.strip()
        == f"upgraded sqlite:///{tmp_path / 'from_env.db'} to schema version {LATEST}"
    )
    assert schema_version(tmp_path / "from_env.db") == LATEST


def schema_version(path: Path) -> int:
    """The schema version of the file (opening refuses a file without the whole schema)."""
    with Client(f"sqlite:///{path}", migrate=False) as client:
        return client.store.schema_version()


def test_upgrade_creates_a_fresh_postgres_database(legato: Invoke, empty_pg_url: str) -> None:
    result = legato("db", "upgrade", "--url", empty_pg_url)
    assert result.exit_code == 0, result.output
    assert f"to schema version {LATEST}" in result.stdout
    again = legato("db", "upgrade", "--url", empty_pg_url)
    assert f"is already at schema version {LATEST}" in again.stdout


def test_upgrade_with_a_bad_url(legato: Invoke, tmp_path: Path) -> None:
    assert_usage_error(legato("db", "upgrade", "--url", "mysql://x"), "is not understood")
    assert_usage_error(
        legato("db", "upgrade", "--url", f"sqlite:///{tmp_path}/no/such/folder.db"),
        "does not exist",
    )
