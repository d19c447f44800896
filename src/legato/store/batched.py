"""A batch's per-row writes as one statement each, whatever the batch's size.

A worker reports its steps in batches (as many as it runs at once). Sending
one ``complete_step`` per attempt and one ``release_successors`` per step
makes the statements of a transaction grow with the batch; on PostgreSQL each
costs the client about as much as the server's work on it. Here a batch's
completions go in one statement, the dependencies they satisfy in one more and
its scope count-downs in a third, each row under the same guard as the one-row
statement (an attempt still current, a successor still waiting), so what each
row does is the same. A batch of one uses the one-row statements.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from legato.store.base import Pending, StepResult, Tx

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = ["send_completions", "send_decrements", "send_releases"]

#: a scope's counter shard: (run id, scope, shard)
CounterKey = tuple[str, str, int]


def _json_rows(rows: list[dict[str, Any]]) -> str:
    """The rows as one JSON array, their text as it is: text no database can store
    (a lone surrogate) fails the statement here as it would the one-row statement's,
    rather than reaching the database as an escape SQLite would decode and keep."""
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


class _Indexed:
    """A batched statement's rows, indexed by ``key_of`` when first read."""

    def __init__(self, pending: Pending, key_of: Callable[[dict[str, Any]], Hashable]) -> None:
        self._pending = pending
        self._key_of = key_of
        self._rows: dict[Hashable, dict[str, Any]] | None = None

    def row(self, key: Hashable) -> dict[str, Any] | None:
        if self._rows is None:
            self._rows = {self._key_of(row): row for row in self._pending.rows()}
        return self._rows.get(key)


class _Picked(Pending):
    """The row one member of a batch wrote, read from the batch's answer."""

    def __init__(self, batch: _Indexed, key: Hashable) -> None:
        self._batch = batch
        self._key = key

    def rows(self) -> list[dict[str, Any]]:
        row = self._batch.row(self._key)
        return [] if row is None else [row]


def send_completions(store: SQLStore, tx: Tx, results: Sequence[StepResult]) -> dict[int, Pending]:
    """Send the completion of each of these attempts (each step run once), in one
    statement when there are several; each answered by the row it wrote, none if
    its attempt is no longer current."""
    if not results:
        return {}
    now = store.clock.now()
    if len(results) == 1:
        (r,) = results
        single = tx.send(
            "complete_step",
            id=r.step_run_id,
            attempt=r.attempt,
            output=r.output_json,
            inputs=r.inputs_json,
            now=now,
        )
        return {r.step_run_id: single}
    if len({r.step_run_id for r in results}) != len(results):
        raise ValueError("a batch completes each step run once")
    batch = tx.send(
        "complete_steps",
        rows=_json_rows(
            [
                {
                    "id": r.step_run_id,
                    "attempt": r.attempt,
                    "output": r.output_json,
                    "inputs": r.inputs_json,
                }
                for r in results
            ]
        ),
        now=now,
    )
    indexed = _Indexed(batch, lambda row: int(row["id"]))
    return {r.step_run_id: _Picked(indexed, r.step_run_id) for r in results}


def send_releases(store: SQLStore, tx: Tx, released: Sequence[tuple[str, str]]) -> Pending | None:
    """Count one completed dependency off each (run, step key) given, a key given
    twice counting two. One statement; None if there is nothing to release. Rows
    come back with their ``run_id`` (as the database gives it: read it with
    ``store._id``)."""
    if not released:
        return None
    counts = Counter(released)
    runs = {run_id for run_id, _ in counts}
    if len(runs) == 1 and all(n == 1 for n in counts.values()):
        (run_id,) = runs
        return tx.send(
            "release_successors",
            run_id=run_id,
            keys=store._list([key for _, key in counts]),
            failed=0,
            now=store.clock.now(),
        )
    return tx.send(
        "release_successors_many",
        rows=_json_rows(
            [{"run_id": run_id, "key": key, "n": n} for (run_id, key), n in sorted(counts.items())]
        ),
        now=store.clock.now(),
    )


def send_decrements(
    store: SQLStore, tx: Tx, counts: dict[CounterKey, int]
) -> dict[CounterKey, Pending]:
    """Count each of these counters down by its number, in one statement when there
    are several (their rows locked in the order of ``sorted(counts)``, as one
    statement each would take them); each answered by its row (``remaining``)."""
    if len(counts) <= 1:
        return {
            counter: tx.send(
                "decrement_counter", run_id=counter[0], scope=counter[1], shard=counter[2], count=n
            )
            for counter, n in counts.items()
        }
    batch = tx.send(
        "decrement_counters",
        rows=_json_rows(
            [
                {"run_id": run_id, "scope": scope, "shard": shard, "count": n}
                for (run_id, scope, shard), n in sorted(counts.items())
            ]
        ),
    )
    indexed = _Indexed(
        batch, lambda row: (store._id(row["run_id"]) or "", row["scope"], int(row["shard"]))
    )
    return {counter: _Picked(indexed, counter) for counter in counts}
