"""Settings: constructor arguments first, then ``LEGATO_*`` environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass

from legato.errors import ConfigError
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES

__all__ = ["DEFAULT_URL", "Settings"]

#: A SQLite file in the working directory.
DEFAULT_URL = "sqlite:///legato.db"


@dataclass(frozen=True)
class Settings:
    url: str
    max_payload_bytes: int
    imports: tuple[str, ...]

    @classmethod
    def load(
        cls,
        *,
        url: str | None = None,
        max_payload_bytes: int | None = None,
        imports: tuple[str, ...] | None = None,
    ) -> Settings:
        env = os.environ
        if max_payload_bytes is None:
            raw = env.get("LEGATO_MAX_PAYLOAD_BYTES")
            try:
                max_payload_bytes = int(raw) if raw else DEFAULT_MAX_PAYLOAD_BYTES
            except ValueError:
                max_payload_bytes = 0  # refused just below, with the text as given
            if max_payload_bytes <= 0:
                raise ConfigError(
                    f"LEGATO_MAX_PAYLOAD_BYTES must be a positive number of bytes, got {raw!r}"
                )
        elif (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes <= 0
        ):
            raise ConfigError(
                f"max_payload_bytes must be a positive number of bytes, got {max_payload_bytes!r}"
            )
        if imports is None:
            imports = tuple(m for m in env.get("LEGATO_IMPORTS", "").replace(",", " ").split() if m)
        return cls(
            url=url or env.get("LEGATO_URL") or DEFAULT_URL,
            max_payload_bytes=max_payload_bytes,
            imports=imports,
        )
