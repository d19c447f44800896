"""Searching runs: a :class:`~legato.model.search.RunFilter` as one SELECT, cut into pages
by keys.

Search statements are composed here rather than named in ``queries.sql``: a
statement that tested every filter whether given or not (``:x IS NULL OR
...``) would hide from either database which index fits, and a filtered
search must read an index in the order it lists runs. Each filter given adds
its condition; every value is a bound parameter (only the page size, a
checked integer, is written in).

Runs are listed by ``(created_at, id)``, newest or oldest first; a page ends
at a key and the next begins after it, so runs started meanwhile never shift
a page (newest first, they come before the first page). Every index a search
reads ends in those two columns.

What is read first is decided by counting, as neither planner can tell a
common value from a rare one everywhere it matters (PostgreSQL's estimate of
a tag combined with a rare status is off by orders of magnitude; SQLite
knows only an index's average): each tag's rows are counted through the
tag index up to :data:`DRIVE_BELOW`, and so (SQLite) are text matches
through the FTS5 index. Text matching fewer runs drives (its matches, then
ordered); else the rarest such tag (its rows, read in listing order); else
the runs' own indexes (status, workflow, correlation id, start time: the
database picks). What does not drive is checked on each run read, where a
common value soon fills a page: tags on the run's own JSON, text with
``LIKE`` (SQLite) or ``ILIKE`` on ``legato_run_text(...)``, which
PostgreSQL may also answer through its trigram index (its plans are made
with the values: search statements are never prepared).

Text is matched in the JSON text of params, outputs and error, a term as a
case-insensitive substring: ``ILIKE`` (PostgreSQL, every letter), ``LIKE``
(SQLite, ASCII letters; the FTS5 index's matches are rechecked with it).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from legato.errors import ParamError, RunNotFoundError
from legato.model.search import Order, RunFilter, RunPage, json_fragment
from legato.payload import dumps
from legato.store.base import Tx
from legato.store.rows import run_from_row

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = ["DRIVE_BELOW", "compose_search", "plan_search", "search_runs"]

#: SQLite: text terms or a tag matching fewer runs than this drive a search (their
#: index is read first); more, and runs are read in order and each is checked
DRIVE_BELOW = 5000


def search_runs(
    store: SQLStore, where: RunFilter, *, order: Order, limit: int, cursor: str | None
) -> RunPage:
    """One page of runs matching ``where``, after ``cursor`` if given."""
    after = _decode(store, cursor, order) if cursor else None
    with store._transaction(write=False) as tx:
        statement, params = plan_search(
            store.dialect, tx, where, order=order, limit=limit + 1, after=after
        )
        rows = tx.select(statement, **params)
        more = len(rows) > limit
        rows = rows[:limit]
        counts = store._counts(tx, [store._id(row["id"]) or "" for row in rows])
    runs = [
        run_from_row(store, row, [], *counts.get(store._id(row["id"]) or "", (0, 0, 0)))
        for row in rows
    ]
    last = rows[-1] if more else None
    return RunPage(runs, None if last is None else _encode(store, order, last))


def plan_search(
    dialect: str,
    tx: Tx,
    where: RunFilter,
    *,
    order: Order,
    limit: int,
    after: tuple[Any, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The statement for ``where`` in this transaction, after counting what may drive it."""
    rare_text, rare_tag = False, None
    if where.correlation_id is None:  # else the correlation id drives
        if where.text and dialect == "sqlite":
            rare_text = _fewer(tx, _TEXT_ROWS, text=_fts_query(where.text))
        if where.tags and not rare_text:
            rows = _TAG_ROWS[dialect]
            counts = [_count(tx, rows, key=key, value=value) for key, value in where.tags]
            if min(counts) < DRIVE_BELOW:
                rare_tag = counts.index(min(counts))
    return compose_search(
        dialect,
        where,
        order=order,
        limit=limit,
        after=after,
        rare_text=rare_text,
        rare_tag=rare_tag,
    )


_TEXT_ROWS = "SELECT 1 FROM run_text WHERE run_text MATCH :text"
_TAG_ROWS = {
    "sqlite": "SELECT 1 FROM run_tags WHERE key = :key AND value = :value",
    "postgres": "SELECT 1 FROM run_tags WHERE key = %(key)s AND value = %(value)s",
}


def _count(tx: Tx, rows: str, **params: Any) -> int:
    """How many rows ``rows`` selects, counted up to :data:`DRIVE_BELOW` (an index's work)."""
    statement = f"SELECT COUNT(*) AS n FROM ({rows} LIMIT {int(DRIVE_BELOW)}) AS found"
    return int(tx.select(statement, **params)[0]["n"])


def _fewer(tx: Tx, rows: str, **params: Any) -> bool:
    return _count(tx, rows, **params) < DRIVE_BELOW


def compose_search(
    dialect: str,
    where: RunFilter,
    *,
    order: Order,
    limit: int,
    after: tuple[Any, str] | None = None,
    rare_text: bool = False,
    rare_tag: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """The statement and parameters that list ``limit`` runs matching ``where``.

    ``rare_text`` (SQLite) says the text terms match few runs, so their matches
    drive the search; else ``rare_tag`` names the tag (by its place in
    ``where.tags``) whose few rows drive it; else the runs' own indexes do.
    """
    sqlite = dialect == "sqlite"
    params: dict[str, Any] = {}

    def bind(name: str, value: Any) -> str:
        params[name] = value
        return f":{name}" if sqlite else f"%({name})s"

    conditions: list[str] = []
    source, at, key = "runs AS r", "r.created_at", "r.id"
    tags = list(where.tags)
    if rare_tag is not None and not rare_text:  # its rows drive, in their index's order
        tag_key, tag_value = tags.pop(rare_tag)
        source = "run_tags AS t0 JOIN runs AS r ON r.id = t0.run_id"
        at, key = "t0.created_at", "t0.run_id"
        conditions += [f"t0.key = {bind('tag_key', tag_key)}"]
        conditions += [f"t0.value = {bind('tag_value', tag_value)}"]
    if tags:  # checked on each run's own tags
        if sqlite:
            for i, (tag_key, tag_value) in enumerate(tags):
                conditions.append(
                    "EXISTS (SELECT 1 FROM json_each(r.tags) AS j WHERE"
                    f" j.key = {bind(f'tags_key_{i}', tag_key)}"
                    f" AND j.value = {bind(f'tags_value_{i}', tag_value)})"
                )
        else:
            conditions.append(f"r.tags @> {bind('tags', dumps(dict(tags)))}::jsonb")
    if where.statuses:
        marks = ", ".join(bind(f"status_{i}", s.value) for i, s in enumerate(where.statuses))
        single = len(where.statuses) == 1
        conditions.append(f"r.status = {marks}" if single else f"r.status IN ({marks})")
    for column, value in (
        ("workflow_name", where.workflow),
        ("workflow_version", where.version),
        ("correlation_id", where.correlation_id),
        ("created_by", where.created_by),
    ):
        if value is not None:
            conditions.append(f"r.{column} = {bind(column, value)}")
    for name, bound, moment in (
        ("started_after", ">=", where.started_after),
        ("started_before", "<", where.started_before),
    ):
        if moment is not None:
            # SQLite keeps seconds as a float that runs read to the nearest microsecond:
            # a bound taken from a run's created_at must fall where that run does.
            stamp = moment.timestamp() - _HALF_MICROSECOND if sqlite else moment
            conditions.append(f"{at} {bound} {bind(name, stamp)}")
    for i, term in enumerate(where.text):
        pattern = bind(f"text_{i}", "%" + _like_escape(json_fragment(term)) + "%")
        if sqlite:  # LIKE folds ASCII letters only, as the index's matches are rechecked
            conditions.append(
                "(" + " OR ".join(f"r.{c} LIKE {pattern} ESCAPE '\\'" for c in _TEXT_COLUMNS) + ")"
            )
        else:
            conditions.append(f"legato_run_text(r.params, r.outputs, r.error) ILIKE {pattern}")
    if where.text and sqlite and rare_text:
        match = bind("text", _fts_query(where.text))
        conditions.append(f"r.seq IN (SELECT rowid FROM run_text WHERE run_text MATCH {match})")
    direction, beyond = ("DESC", "<") if order == "newest" else ("ASC", ">")
    if after is not None:
        after_at, after_id = after
        at_mark = bind("after_at", after_at)
        id_mark = bind("after_id", after_id) + ("" if sqlite else "::uuid")
        conditions.append(
            f"{at} {beyond}= {at_mark} AND ({at} {beyond} {at_mark} OR {key} {beyond} {id_mark})"
        )
    text = (
        f"SELECT r.* FROM {source}"
        + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        + f" ORDER BY {at} {direction}, {key} {direction} LIMIT {int(limit)}"
    )
    return text, params


_TEXT_COLUMNS = ("params", "outputs", "error")
_HALF_MICROSECOND = 5e-7


def _fts_query(terms: tuple[str, ...]) -> str:
    """An FTS5 query matching runs holding every term (each a quoted string)."""
    return " AND ".join('"' + json_fragment(t).replace('"', '""') + '"' for t in terms)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- cursors ---------------------------------------------------------------------------------


def _encode(store: SQLStore, order: Order, row: dict[str, Any]) -> str:
    """The key of the page's last run, as opaque text (the next page starts after it)."""
    at = row["created_at"]
    data = [order[0], at.isoformat() if isinstance(at, datetime) else at, store._id(row["id"])]
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(store: SQLStore, cursor: str, order: Order) -> tuple[Any, str]:
    bad = ParamError(
        f"cursor {cursor[:40]!r} is not one a search of this database returned; pass the "
        "next_cursor of the page before, with the same order"
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        flag, at, run_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise bad from None
    if flag != order[0] or not isinstance(run_id, str):
        raise bad
    try:
        run_id = store._check_run_id(run_id)
    except RunNotFoundError:
        raise bad from None
    if store.dialect == "sqlite":
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise bad
        return at, run_id
    if not isinstance(at, str):
        raise bad
    try:
        return datetime.fromisoformat(at), run_id
    except ValueError:
        raise bad from None
