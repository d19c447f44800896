"""What a run search asks for and what it gets back: :class:`RunFilter`, :class:`RunPage`.

Plain data, checked as it is built, the same whether the filter came from
keyword arguments or from a query string (:mod:`legato.query`): a bad value
is a :class:`~legato.ParamError` naming the filter and what it expects,
before any database is asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

from legato.errors import ParamError
from legato.model.runs import Run
from legato.model.states import RunStatus

__all__ = [
    "MAX_LIMIT",
    "MAX_TAGS",
    "MAX_TERMS",
    "MIN_TERM_CHARS",
    "STATUS_NAMES",
    "Order",
    "RunFilter",
    "RunPage",
    "ago",
    "json_fragment",
    "limit_option",
    "moment",
    "order_option",
]

Order = Literal["newest", "oldest"]

#: the most runs one page holds
MAX_LIMIT = 1000
#: the fewest characters a text term has: both databases' indexes are of trigrams
MIN_TERM_CHARS = 3
MAX_TERM_CHARS = 200
MAX_TERMS = 8
MAX_TAGS = 10

#: the run statuses, as a message lists them
STATUS_NAMES = ", ".join(s.value for s in list(RunStatus)[:-1]) + f" or {list(RunStatus)[-1].value}"


@dataclass(frozen=True)
class RunFilter:
    """Which runs a search returns: every filter given must hold (``None``/empty: any).

    Build it with :meth:`of`, which checks every value.
    """

    statuses: tuple[RunStatus, ...] = ()
    workflow: str | None = None
    version: str | None = None
    #: key/value pairs, every one of which the run's tags hold
    tags: tuple[tuple[str, str], ...] = ()
    correlation_id: str | None = None
    created_by: str | None = None
    #: bounds on the time the run was started (created): after is inclusive, before is not
    started_after: datetime | None = None
    started_before: datetime | None = None
    #: terms each found (case-insensitive, as a substring) in the run's params, outputs or error
    text: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        *,
        status: str | RunStatus | Iterable[str | RunStatus] | None = None,
        workflow: str | None = None,
        version: str | None = None,
        tags: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
        created_by: str | None = None,
        started_after: datetime | date | str | None = None,
        started_before: datetime | date | str | None = None,
        text: str | Iterable[str] | None = None,
    ) -> RunFilter:
        """A filter from search arguments, each checked; :class:`ParamError` names a bad one."""
        return cls(
            statuses=_statuses(status),
            workflow=_word("workflow", workflow),
            version=_word("version", version),
            tags=_tag_pairs(tags),
            correlation_id=_word("correlation_id", correlation_id),
            created_by=_word("created_by", created_by),
            started_after=moment("started_after", started_after),
            started_before=moment("started_before", started_before),
            text=_terms(text),
        )

    def to_json(self) -> dict[str, Any]:
        """The filters given, as JSON (what ``--json`` output and the API echo)."""
        data: dict[str, Any] = {}
        if self.statuses:
            data["status"] = [s.value for s in self.statuses]
        for name in ("workflow", "version", "correlation_id", "created_by"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.tags:
            data["tags"] = dict(self.tags)
        for name in ("started_after", "started_before"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value.isoformat()
        if self.text:
            data["text"] = list(self.text)
        return data


@dataclass(frozen=True)
class RunPage:
    """One page of a search: its runs (without their steps) and where the next page starts.

    ``next_cursor`` is ``None`` on the last page; pass it as ``cursor=`` to read
    on. Pages are cut by the runs' keys, not by counting, so runs started
    between two reads never shift the next page.
    """

    runs: list[Run]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)


def order_option(order: str) -> Order:
    """``newest`` or ``oldest``, checked."""
    if order not in get_args(Order):
        raise ParamError(f"order must be 'newest' or 'oldest', got {order!r}")
    return order  # type: ignore[return-value]


def limit_option(limit: object) -> int:
    """A page size from 1 to :data:`MAX_LIMIT`, checked."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ParamError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def moment(name: str, value: datetime | date | str | None) -> datetime | None:
    """A point in time as an aware UTC datetime: a datetime or date (naive means UTC) or
    ISO 8601 text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ParamError(
                f"{name} {value!r} is not an ISO 8601 date or time "
                "(2024-05-01, 2024-05-01T06:00:00+02:00)"
            ) from None
    elif not isinstance(value, datetime):
        if not isinstance(value, date):
            raise ParamError(
                f"{name} must be a datetime, a date or ISO 8601 text, got {type(value).__name__}"
            )
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def ago(seconds: float, now: datetime | None = None) -> datetime:
    """The moment ``seconds`` before ``now`` (default: this machine's clock, UTC)."""
    return (now or datetime.now(UTC)) - timedelta(seconds=seconds)


def _statuses(value: str | RunStatus | Iterable[str | RunStatus] | None) -> tuple[RunStatus, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    found: list[RunStatus] = []
    for item in items:
        try:
            status = RunStatus(item)
        except ValueError:
            raise ParamError(f"unknown run status {item!r}; expected {STATUS_NAMES}") from None
        if status not in found:
            found.append(status)
    return tuple(found)


def _word(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParamError(f"{name} must be non-empty text, got {value!r}")
    return value.strip()


def _tag_pairs(tags: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if not tags:
        return ()
    if not isinstance(tags, Mapping):
        raise ParamError(f"tags must be a mapping of keys to values, got {type(tags).__name__}")
    bad = [k for k, v in tags.items() if not isinstance(k, str) or not isinstance(v, str) or not k]
    if bad:
        raise ParamError(f"tags are non-empty text keys with text values; these are not: {bad!r}")
    if len(tags) > MAX_TAGS:
        raise ParamError(f"a search matches at most {MAX_TAGS} tags, got {len(tags)}")
    return tuple(sorted(tags.items()))


def _terms(text: str | Iterable[str] | None) -> tuple[str, ...]:
    if text is None:
        return ()
    items = [text] if isinstance(text, str) else list(text)
    terms: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ParamError(f"text terms are text, got {item!r}")
        term = item.strip()
        if len(term) < MIN_TERM_CHARS:
            raise ParamError(
                f"text term {item!r} is too short: a term needs at least {MIN_TERM_CHARS} "
                "characters (the text indexes are of trigrams)"
            )
        if len(term) > MAX_TERM_CHARS:
            raise ParamError(f"text term {term[:20]!r}... is over {MAX_TERM_CHARS} characters")
        if term not in terms:
            terms.append(term)
    if len(terms) > MAX_TERMS:
        raise ParamError(f"a search looks for at most {MAX_TERMS} text terms, got {len(terms)}")
    return tuple(terms)


def json_fragment(term: str) -> str:
    """The term as it appears inside JSON text (a quote or a newline escaped, as stored)."""
    return json.dumps(term, ensure_ascii=False)[1:-1]
