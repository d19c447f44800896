"""Run params from the command line, typed by what the workflow declares.

``-p n=3`` is the int 3 when the workflow declares ``n`` as an int and the
text ``"3"`` when it declares ``str`` or ``any``; lists and dicts are JSON;
``date`` and ``datetime`` are ISO text; a ``choice`` is the option written so
(``-p level=2`` is the number 2 when 2 is an option).
``--params-json`` gives values as JSON directly. Binding (missing, unknown,
wrong type) stays the spec's job, so the messages match the Python API's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from legato.errors import ParamError
from legato.model.spec import ParamSpec, WorkflowSpec

__all__ = ["build_params", "parse_pairs"]

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


def parse_pairs(items: Iterable[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; the last of a repeated key wins."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamError(f"{option} {item!r}: expected key=value")
        pairs[key] = value
    return pairs


def build_params(
    spec: WorkflowSpec, pairs: dict[str, str], params_json: str | None = None
) -> dict[str, Any]:
    """``--params-json`` first, then each ``-p`` on top, coerced to its declared type."""
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            given = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise ParamError(f"--params-json is not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise ParamError(
                f"--params-json must be a JSON object, got {type(given).__name__} {params_json!r}"
            )
        params.update(given)
    problems = []
    for name, text in pairs.items():
        declared = spec.params.get(name)
        kind = declared.type if declared is not None else "any"
        try:
            if declared is not None and kind in ("date", "datetime", "choice"):
                params[name] = declared.accept(_option(text, declared))  # checked as the API does
            else:
                params[name] = coerce(text, kind)
        except ValueError as exc:
            problems.append(f"-p {name}={text}: param {name!r} {_is(exc, kind)}")
    if problems:
        raise ParamError(f"workflow {spec.label}: " + "; ".join(problems))
    return params


def _option(text: str, param: ParamSpec) -> Any:
    """The option of a choice written as ``text`` (``2`` for the number 2), else the text."""
    for option in param.options or ():
        written = option if isinstance(option, str) else json.dumps(option)
        if text == written:
            return option
    return text


def _is(exc: ValueError, kind: str) -> str:
    """``is int: 'x' is not a whole number``, or the spec's own ``must be ...`` message."""
    message = str(exc)
    return message if message.startswith("must be") else f"is {kind}: {message}"


def coerce(text: str, kind: str) -> Any:
    """Turn command-line text into a value of a declared param type, or raise ValueError."""
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        return value
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{text!r} is not true or false")
    if kind in ("list", "dict"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"{text!r} is not JSON") from None
        expected = list if kind == "list" else dict
        if not isinstance(value, expected):
            raise ValueError(f"expected a JSON {'array' if kind == 'list' else 'object'}")
        return value
    return text
