"""The search query string: ``status:failed workflow:etl tag:env=prod since:2d "timeout"``.

One grammar for the command line and the API, parsed into the same keyword
arguments :meth:`legato.Client.search` takes, never into SQL. A query is
tokens separated by spaces:

==========================  ==============================================================
``status:failed,cancelled``  runs in any of these statuses (repeatable)
``workflow:etl``             runs of this workflow; ``workflow:etl@2`` of its version 2
``version:2``                runs of this version
``tag:env=prod``             runs whose tags hold env=prod (repeatable: every one must hold)
``correlation:abc``          runs with this correlation id
``by:alice``                 runs created by alice
``since:2d``                 runs started in the last 2 days (or since a date: ``since:2024-05-01``)
``until:1h``                 runs started before 1 hour ago (or before a date)
``"connection refused"``     text found in the run's params, outputs or error
``timeout``                  a bare word is a text term too
==========================  ==============================================================

A value holding spaces is quoted (``tag:"team=data eng"``). Anything else is
a :class:`~legato.ParamError` naming the token, its position, and what was
expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from legato.durations import parse_duration
from legato.errors import ParamError
from legato.model.search import STATUS_NAMES, RunFilter, ago, moment
from legato.model.states import RunStatus

__all__ = ["FIELDS", "parse_query"]

#: each field and the search argument it fills
FIELDS = {
    "status": "status",
    "workflow": "workflow",
    "version": "version",
    "tag": "tags",
    "correlation": "correlation_id",
    "by": "created_by",
    "since": "started_after",
    "until": "started_before",
}
#: other spellings people reach for
_ALIASES = {
    "is": "status",
    "wf": "workflow",
    "correlation_id": "correlation",
    "created_by": "by",
    "after": "since",
    "before": "until",
    "tags": "tag",
}


@dataclass(frozen=True)
class _Token:
    #: the field (``None``: a text term)
    field: str | None
    value: str
    #: as written, for messages
    text: str
    #: where it starts (1-based character)
    at: int


def parse_query(query: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The search arguments ``query`` stands for (``status``, ``tags``, ``text``, ...).

    Relative times (``since:2d``) count back from ``now`` (default: this
    machine's clock). Raises :class:`ParamError` for a bad token.
    """
    args: dict[str, Any] = {}
    statuses: list[str] = []
    tags: dict[str, str] = {}
    text: list[str] = []
    for token in _tokens(query):
        if token.field is None:
            text.append(token.value)
            continue
        name = FIELDS[token.field]
        if token.field == "status":
            statuses += _statuses(token)
        elif token.field == "tag":
            key, value = _tag(token)
            if tags.get(key, value) != value:
                raise _error(token, f"tag {key!r} is given twice, with different values")
            tags[key] = value
        elif token.field == "workflow" and "@" in token.value:
            workflow, _, version = token.value.partition("@")
            if not workflow or not version:
                raise _error(token, "expected workflow:NAME or workflow:NAME@VERSION")
            _set(args, "workflow", workflow, token)
            _set(args, "version", version, token)
        elif token.field in ("since", "until"):
            _set(args, name, _when(token, now), token)
        else:
            _set(args, name, token.value, token)
    if statuses:
        args["status"] = list(dict.fromkeys(statuses))
    if tags:
        args["tags"] = tags
    if text:
        args["text"] = text
    try:
        RunFilter.of(**args)  # every value checked here, where the query can be named
    except ParamError as exc:
        raise ParamError(f"query {query!r}: {exc}") from None
    return args


def _tokens(query: str) -> list[_Token]:
    tokens = []
    pos, end = 0, len(query)
    while pos < end:
        if query[pos].isspace():
            pos += 1
            continue
        start = pos
        if query[pos] == '"':
            value, pos = _quoted(query, pos)
            tokens.append(_Token(None, value, query[start:pos], start + 1))
            continue
        while pos < end and not query[pos].isspace() and query[pos] != '"':
            pos += 1
        word = query[start:pos]
        field, colon, rest = word.partition(":")
        if not colon:
            tokens.append(_Token(None, word, word, start + 1))
            continue
        field = _field(field.lower(), word, start + 1)
        if not rest and pos < end and query[pos] == '"':  # tag:"team=data eng"
            rest, pos = _quoted(query, pos)
        if not rest:
            raise ParamError(
                f"query: {query[start:pos]!r} at character {start + 1} needs a value after "
                f"the colon (e.g. {_EXAMPLES[field]})"
            )
        tokens.append(_Token(field, rest, query[start:pos], start + 1))
    return tokens


def _quoted(query: str, start: int) -> tuple[str, int]:
    """The text of the quoted string at ``start`` (``\\"`` is a quote) and where it ends."""
    pos, chars = start + 1, []
    while pos < len(query):
        char = query[pos]
        if char == "\\" and pos + 1 < len(query) and query[pos + 1] in '"\\':
            chars.append(query[pos + 1])
            pos += 2
            continue
        if char == '"':
            return "".join(chars), pos + 1
        chars.append(char)
        pos += 1
    raise ParamError(f"query: the quote at character {start + 1} is never closed")


def _field(name: str, word: str, at: int) -> str:
    name = _ALIASES.get(name, name)
    if name in FIELDS:
        return name
    known = ", ".join(f"{f}:" for f in FIELDS)
    raise ParamError(
        f"query: unknown filter {name!r} in {word!r} at character {at}; the filters are "
        f'{known}; to search for this text, quote it: "{word}"'
    )


_EXAMPLES = {
    "status": "status:failed",
    "workflow": "workflow:etl",
    "version": "version:2",
    "tag": "tag:env=prod",
    "correlation": "correlation:order-42",
    "by": "by:alice",
    "since": "since:2d",
    "until": "until:2024-05-01",
}


def _error(token: _Token, what: str) -> ParamError:
    return ParamError(f"query: {token.text!r} at character {token.at}: {what}")


def _set(args: dict[str, Any], name: str, value: Any, token: _Token) -> None:
    if name in args and args[name] != value:
        raise _error(token, f"{name} is given twice")
    args[name] = value


def _statuses(token: _Token) -> list[str]:
    values = [v.strip().lower() for v in token.value.split(",")]
    known = [s.value for s in RunStatus]
    for value in values:
        if value not in known:
            raise _error(token, f"unknown run status {value!r}; expected {STATUS_NAMES}")
    return values


def _tag(token: _Token) -> tuple[str, str]:
    key, equals, value = token.value.partition("=")
    if not equals or not key:
        raise _error(token, "expected tag:KEY=VALUE")
    return key, value


def _when(token: _Token, now: datetime | None) -> datetime:
    """``2d`` (that long before now) or an ISO 8601 date or time."""
    try:
        seconds = parse_duration(token.value, field=token.field or "")
    except ValueError:
        pass
    else:
        assert seconds is not None
        return ago(seconds, now)
    try:
        found = moment(token.field or "", token.value)
    except ParamError:
        raise _error(
            token,
            "expected a duration before now (30m, 2d, 1w) or an ISO 8601 date or time "
            "(2024-05-01, 2024-05-01T06:00:00Z)",
        ) from None
    assert found is not None
    return found
