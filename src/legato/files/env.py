"""``${VAR}`` in definition files: the environment read at load time, only where allowed.

A file may name environment variables as ddeutil-workflow's do
(``path: s3://${BUCKET}/raw``). Reading the environment is the operator's
choice, not the file's: only variables matching ``LEGATO_ENV_ALLOW`` (comma
separated patterns such as ``AWS_REGION,STAGE_*``) are read, and their values
go into the spec. Variables matching ``LEGATO_SECRETS`` are secrets: they are
never read here and never stored; ``${API_TOKEN}`` becomes
``${{ secrets.API_TOKEN }}``, which the worker resolves from its own
environment when it calls the task, recording ``***`` in its place. Any other
variable is an error naming both settings. ``${VAR:-default}`` gives a
default for an unset variable; ``$${VAR}`` is the text ``${VAR}``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from legato.files.documents import DocPath

__all__ = ["EnvRules", "substitute"]

_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _patterns(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").replace(";", ",").split(",") if p.strip())


@dataclass(frozen=True)
class EnvRules:
    """Which variables a file may read (``allow``) and which are secrets (``secrets``)."""

    allow: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EnvRules:
        environ = os.environ if environ is None else environ
        return cls(
            allow=_patterns(environ.get("LEGATO_ENV_ALLOW")),
            secrets=_patterns(environ.get("LEGATO_SECRETS")),
            environ=environ,
        )

    def is_secret(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.secrets)

    def is_allowed(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.allow)


def substitute(data: Any, rules: EnvRules) -> tuple[Any, list[tuple[DocPath, str]]]:
    """``data`` with every ``${VAR}`` in its text replaced, and the problems by path."""
    problems: list[tuple[DocPath, str]] = []

    def walk(value: Any, path: DocPath) -> Any:
        if isinstance(value, str):
            return _text(value, path) if "${" in value else value
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def _text(text: str, path: DocPath) -> str:
        def one(match: re.Match[str]) -> str:
            escaped, name, default = match.group(1), match.group(2), match.group(3)
            if escaped:
                return match.group(0)[1:]
            if rules.is_secret(name):
                if default is not None:
                    problems.append((path, f"secret ${{{name}}} cannot have a default"))
                return "${{ secrets." + name + " }}"
            if not rules.is_allowed(name):
                problems.append(
                    (
                        path,
                        f"environment variable {name} is not allowed in definitions: allow it "
                        "with LEGATO_ENV_ALLOW (or mark it secret with LEGATO_SECRETS)",
                    )
                )
                return match.group(0)
            found = rules.environ.get(name)
            if found is None:
                if default is not None:
                    return default
                hint = f"give a default: ${{{name}:-...}}"
                problems.append((path, f"environment variable {name} is not set ({hint})"))
                return match.group(0)
            return found

        return _VAR.sub(one, text)

    return walk(data, ()), problems
