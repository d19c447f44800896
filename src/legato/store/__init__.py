"""Stores: where runs live. :func:`open_store` picks one from a URL."""

from __future__ import annotations

from legato.engine.clock import Clock
from legato.errors import ConfigError
from legato.store.base import Store

__all__ = ["Store", "open_store"]


def open_store(
    url: str,
    *,
    clock: Clock | None = None,
    max_payload_bytes: int | None = None,
    migrate: bool = True,
) -> Store:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://...``."""
    if url.startswith("sqlite:"):
        from legato.store.sqlite.store import SQLiteStore

        path = url.removeprefix("sqlite:")
        if path.startswith("///"):
            path = path[3:]
        elif path.startswith("//"):
            raise ConfigError(
                f"SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        if not path:
            raise ConfigError(f"SQLite URL {url!r} names no file")
        return SQLiteStore(path, clock=clock, max_payload_bytes=max_payload_bytes, migrate=migrate)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from legato.store.postgres.store import PostgresStore

        return PostgresStore(url, clock=clock, max_payload_bytes=max_payload_bytes, migrate=migrate)
    if url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{url!r}: an HTTP client needs the legato REST API, which is not part of this release"
        )
    raise ConfigError(
        f"database URL {url!r} is not understood; use sqlite:///path.db or postgresql://user@host/db"
    )
