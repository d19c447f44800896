"""Settings: constructor arguments first, then ``LEGATO_*`` environment variables, then defaults."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from legato.errors import ConfigError, SecretError
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES

__all__ = ["DEFAULT_URL", "Secrets", "Settings", "read_flag"]

#: A SQLite file in the working directory.
DEFAULT_URL = "sqlite:///legato.db"


_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    url: str
    max_payload_bytes: int
    imports: tuple[str, ...]
    #: ``LEGATO_SECRETS``: patterns (fnmatch) of the environment variables this
    #: process lends to steps as ``secrets.NAME``; none by default
    secrets: tuple[str, ...] = ()
    #: ``LEGATO_ALLOW_SHELL``: whether this process runs ``legato.shell`` steps
    allow_shell: bool = False

    @classmethod
    def load(
        cls,
        *,
        url: str | None = None,
        max_payload_bytes: int | None = None,
        imports: tuple[str, ...] | None = None,
        secrets: tuple[str, ...] | None = None,
        allow_shell: bool | None = None,
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
        if secrets is None:
            secrets = _names(env.get("LEGATO_SECRETS", ""))
        if allow_shell is None:
            allow_shell = read_flag("LEGATO_ALLOW_SHELL", env.get("LEGATO_ALLOW_SHELL", ""))
        return cls(
            url=url or env.get("LEGATO_URL") or DEFAULT_URL,
            max_payload_bytes=max_payload_bytes,
            imports=imports,
            secrets=tuple(secrets),
            allow_shell=bool(allow_shell),
        )


def _names(raw: str) -> tuple[str, ...]:
    return tuple(n for n in raw.replace(",", " ").split() if n)


def read_flag(name: str, raw: str) -> bool:
    """An on/off setting as people write it (1/0, true/false, yes/no, on/off)."""
    text = raw.strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


@dataclass(frozen=True)
class Secrets:
    """The secrets a process lends the steps it resolves: environment variables whose
    names match one of ``patterns`` (``LEGATO_SECRETS``; fnmatch, case-sensitive).

    Values are read from ``environ`` (default: this process's environment) when
    a step asks for them, never earlier, and never written anywhere by legato.
    """

    patterns: tuple[str, ...] = ()
    environ: Mapping[str, str] | None = None

    def allows(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self.patterns)

    def values(self, names: Iterable[str]) -> dict[str, str]:
        """The value of each secret, or :class:`SecretError` naming every one missing."""
        environ = os.environ if self.environ is None else self.environ
        found: dict[str, str] = {}
        refused: list[str] = []
        unset: list[str] = []
        for name in sorted(set(names)):
            if not self.allows(name):
                refused.append(name)
            elif name not in environ:
                unset.append(name)
            else:
                found[name] = environ[name]
        problems = []
        if refused:
            allowed = ", ".join(self.patterns) if self.patterns else "unset, so none"
            problems.append(
                f"{_secrets(refused)} not allowed by LEGATO_SECRETS ({allowed}) in this "
                f"worker's environment; add {'them' if len(refused) > 1 else 'it'} there "
                f"(e.g. LEGATO_SECRETS={','.join([*self.patterns, *refused])})"
            )
        if unset:
            problems.append(
                f"{_secrets(unset)} allowed by LEGATO_SECRETS but not set in this worker's "
                "environment"
            )
        if problems:
            raise SecretError("; ".join(problems))
        return found


def _secrets(names: list[str]) -> str:
    if len(names) == 1:
        return f"secret {names[0]!r} is"
    return "secrets " + ", ".join(repr(n) for n in names) + " are"
