"""Settings: constructor arguments first, then ``LEGATO_*`` environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from legato.errors import ConfigError
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES

__all__ = ["DEFAULT_CONF_PATH", "DEFAULT_URL", "Settings", "redact_url"]

#: A SQLite file in the working directory.
DEFAULT_URL = "sqlite:///legato.db"

#: Where workflows are looked up by name: definition files in this folder.
DEFAULT_CONF_PATH = ("./workflows",)


@dataclass(frozen=True)
class Settings:
    url: str
    max_payload_bytes: int
    imports: tuple[str, ...]
    #: folders searched for definition files by workflow name (``LEGATO_CONF_PATH``)
    conf_path: tuple[str, ...] = DEFAULT_CONF_PATH

    @classmethod
    def load(
        cls,
        *,
        url: str | None = None,
        max_payload_bytes: int | None = None,
        imports: tuple[str, ...] | None = None,
        conf_path: str | os.PathLike[str] | tuple[str | os.PathLike[str], ...] | None = None,
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
            conf_path=_folders(conf_path, env.get("LEGATO_CONF_PATH")),
        )


def _folders(
    given: str | os.PathLike[str] | tuple[str | os.PathLike[str], ...] | None, raw: str | None
) -> tuple[str, ...]:
    """Folders as given (one, a tuple, or several joined by ``os.pathsep``), else the variable's."""
    if given is None:
        folders = tuple(p for p in (raw or "").split(os.pathsep) if p.strip())
        return folders or DEFAULT_CONF_PATH
    if isinstance(given, str | os.PathLike):
        text = os.fspath(given)
        return tuple(p for p in text.split(os.pathsep) if p.strip()) or DEFAULT_CONF_PATH
    return tuple(os.fspath(p) for p in given) or DEFAULT_CONF_PATH


def redact_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
