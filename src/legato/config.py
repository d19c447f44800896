"""Settings: constructor arguments first, then ``LEGATO_*`` environment variables, then defaults."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import urlsplit, urlunsplit

from legato.errors import ConfigError, SecretError
from legato.model.retention import Retention
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES

__all__ = [
    "DEFAULT_CONF_PATH",
    "DEFAULT_URL",
    "LogLimits",
    "Secrets",
    "Settings",
    "read_flag",
    "redact_url",
]

#: A SQLite file in the working directory.
DEFAULT_URL = "sqlite:///legato.db"

#: Where workflows are looked up by name: definition files in this folder.
DEFAULT_CONF_PATH = ("./workflows",)


#: the lines and bytes of one attempt's log kept by default
DEFAULT_LOG_LINES = 10_000
DEFAULT_LOG_BYTES = 1024 * 1024

_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class LogLimits:
    """How much of one attempt's log is kept: ``lines`` (0: capture nothing) and ``bytes``."""

    lines: int = DEFAULT_LOG_LINES
    bytes: int = DEFAULT_LOG_BYTES

    @property
    def enabled(self) -> bool:
        return self.lines > 0

    @classmethod
    def load(
        cls,
        lines: int | None = None,
        size: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> LogLimits:
        """From the arguments, else ``LEGATO_LOG_LINES`` and ``LEGATO_LOG_BYTES``, else
        the defaults (10,000 lines, 1 MiB)."""
        env = os.environ if env is None else env
        return cls(
            lines=_whole("log_lines", "LEGATO_LOG_LINES", lines, env, DEFAULT_LOG_LINES),
            bytes=_whole("log_bytes", "LEGATO_LOG_BYTES", size, env, DEFAULT_LOG_BYTES),
        )


def _whole(
    name: str, variable: str, given: int | None, env: Mapping[str, str], default: int
) -> int:
    if given is None:
        raw = env.get(variable, "").strip()
        if not raw:
            return default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{variable} must be a whole number, got {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{variable} must be 0 or more, got {raw!r}")
        return value
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise ConfigError(f"{name} must be a whole number, 0 or more; got {given!r}")
    return given


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
    #: folders searched for definition files by workflow name (``LEGATO_CONF_PATH``)
    conf_path: tuple[str, ...] = DEFAULT_CONF_PATH
    #: the prune rule workers apply by themselves (``LEGATO_RETENTION=30d``, with
    #: ``LEGATO_RETENTION_STATUS`` and ``LEGATO_RETENTION_EVERY``); none by default
    retention: Retention | None = None
    #: how much of each attempt's log a worker keeps (``LEGATO_LOG_LINES``,
    #: ``LEGATO_LOG_BYTES``)
    log_limits: LogLimits = field(default_factory=LogLimits)

    @classmethod
    def load(
        cls,
        *,
        url: str | None = None,
        max_payload_bytes: int | None = None,
        imports: tuple[str, ...] | None = None,
        secrets: tuple[str, ...] | None = None,
        allow_shell: bool | None = None,
        conf_path: str | os.PathLike[str] | tuple[str | os.PathLike[str], ...] | None = None,
        retention: Retention | str | None = None,
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
            conf_path=_folders(conf_path, env.get("LEGATO_CONF_PATH")),
            retention=_retention(retention, env),
            log_limits=LogLimits.load(env=env),
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


def _retention(given: Retention | str | None, env: Mapping[str, str]) -> Retention | None:
    """The automatic prune rule: as given (a rule, or its age as text), else the variables'."""
    if isinstance(given, Retention):
        return given
    if given is not None:
        return Retention.of(given, source="retention")
    raw = env.get("LEGATO_RETENTION", "").strip()
    if raw.lower() in ("", "off", "none", "0"):
        return None
    return Retention.of(
        raw,
        statuses=env.get("LEGATO_RETENTION_STATUS") or None,
        every=env.get("LEGATO_RETENTION_EVERY") or None,
        source="LEGATO_RETENTION",
    )


def redact_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
