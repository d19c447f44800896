"""Fixtures every suite shares: a fresh database of each kind per test.

PostgreSQL tests never skip: if the server cannot be reached, they error.
Each test gets its own database, copied from a template migrated once per
session, and dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from legato import Client

PG_ADMIN_URL = os.environ.get(
    "LEGATO_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgres"]
_counter = itertools.count()


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the test suite and is not reachable at "
            f"{PG_ADMIN_URL}: {exc}",
            pytrace=False,
        )
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def pg_template(pg_admin: psycopg.Connection) -> Iterator[str]:
    """A database migrated once; each test copies it."""
    name = f"legato_t_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    Client(_pg_url(name)).close()  # applies the migrations
    yield name
    pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_admin: psycopg.Connection, pg_template: str) -> Iterator[str]:
    name = f"{pg_template}_{next(_counter)}"
    pg_admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'legato.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database URL: once for SQLite, once for PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def client(db_url: str) -> Iterator[Client]:
    """A client on a fresh database of each kind."""
    with Client(db_url) as c:
        yield c


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, not even the migrations (SQLite: no file yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin: psycopg.Connection = request.getfixturevalue("pg_admin")
    name = f"legato_empty_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield _pg_url(name)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
