"""Flow limits in the claim transaction: concurrency and rate slots across all workers.

A limited step's row names the slot it counts against (``flow_key``: its
task, and the value of its ``flow_by`` argument once known) and its limits.
Claims pass over steps whose slot is full (a test in the claim statement, in
``queries.sql``), and every claimed attempt with limits then takes its slot
here, under the slot's ``flow_windows`` row lock, taken in key order so
claimers never deadlock: the running attempts of the slot are counted from
the step rows themselves, so completion, failure, timeout, a lost worker's
sweep, a hand-back and a cancel all free the slot by changing the attempt's
status; starts are counted per fixed window on the slot's row. An attempt
the slot has no room for goes straight back to the queue (``unclaim_step``),
in the same transaction, before anything else learns of it.

Steps without limits cost the claim one ``flow_key IS NULL`` test.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from legato.model.limits import FlowLimits
from legato.payload import dumps

if TYPE_CHECKING:
    from legato.engine.planner import NewInstance, TaskDefaults
    from legato.store.base import ClaimedStep, Tx
    from legato.store.sql import SQLStore

__all__ = ["Gate", "mark_new", "slot_key"]

#: stores that have met a limited step: their short claims ask when a full window opens
_seen: weakref.WeakSet[Any] = weakref.WeakSet()


def slot_key(task: str, by: str | None, value: Any = None) -> str:
    """The slot a call counts against: ``charge``, or ``charge[customer="acme"]``."""
    if by is None:
        return task
    try:
        text = dumps(value)
    except Exception:
        text = repr(value)
    return f"{task}[{by}={text}]"


def _columns(task: str, flow: FlowLimits) -> dict[str, Any]:
    return {
        # per key: the slot is known once the call's arguments are, at its first claim
        "flow_key": slot_key(task, None) if flow.key is None else None,
        "flow_by": flow.key,
        "concurrency": flow.concurrency,
        "rate": None if flow.rate is None else flow.rate[0],
        "window": None if flow.rate is None else flow.rate[1],
    }


def mark_new(tx: Tx, run_id: str, rows: Sequence[NewInstance]) -> None:
    """Write the limits of the new task instances that have any onto their rows."""
    marked = [
        {"run_id": run_id, "key": r.key, **_columns(r.task, r.policy.flow)}
        for r in rows
        if r.task is not None and r.policy is not None and r.policy.flow is not None
    ]
    if marked:
        tx.many("mark_flow", marked)


@dataclass
class _Candidate:
    order: int
    row: dict[str, Any]
    step: ClaimedStep
    flow: FlowLimits
    key: str


class Gate:
    """Admits the attempts one claim picked, as their slots allow."""

    def __init__(self, store: SQLStore, tx: Tx) -> None:
        self.store = store
        self.tx = tx
        #: seconds until the soonest full rate window opens, if one stopped a claim
        self.next_in: float | None = None
        #: the slots whose rows this transaction holds
        self.locked: set[str] = set()

    def admit(
        self,
        picked: list[tuple[dict[str, Any], ClaimedStep]],
        defaults: Mapping[str, TaskDefaults],
    ) -> list[int]:
        """The indexes into ``picked`` of the attempts that go ahead; the others are
        back in the queue. Unlimited steps (the usual case) go ahead untouched."""
        candidates = []
        for order, (row, step) in enumerate(picked):
            flow = _row_limits(row, defaults.get(row["task"]))
            if flow is None or step.resolve_error is not None:
                continue  # no limits; or it fails at once, running none of its code
            key = slot_key(row["task"], flow.key, step.kwargs.get(flow.key) if flow.key else None)
            candidates.append(_Candidate(order, row, step, flow, key))
        if not candidates:
            return list(range(len(picked)))
        _seen.add(self.store)
        refused: set[int] = set()
        # Slot rows in key order (claimers of two slots never wait on each other in
        # a cycle); within a slot, in claim order.
        ordered = sorted(candidates, key=lambda c: (c.key, c.order))
        for at, c in enumerate(ordered):
            if c.key not in self.locked and self.locked and c.key < max(self.locked):
                # A later round of the claim: taking this row now would break the
                # key order. Next claim.
                self._refuse(c)
                refused.add(c.order)
                continue
            # This claim's attempts of the slot not decided yet are running in
            # this transaction's view, but hold no slot.
            undecided = [d.row["id"] for d in ordered[at + 1 :] if d.key == c.key]
            if not self._take(c, undecided):
                refused.add(c.order)
        return [i for i in range(len(picked)) if i not in refused]

    def _take(self, c: _Candidate, undecided: list[int]) -> bool:
        row, flow = c.row, c.flow
        params = {
            "flow_key": c.key,
            "concurrency": flow.concurrency,
            "rate": None if flow.rate is None else flow.rate[0],
            "window": None if flow.rate is None else flow.rate[1],
            "now": self.store.clock.now(),
        }
        if (
            row["flow_key"] != c.key
            or row["flow_concurrency"] != params["concurrency"]
            or row["flow_rate"] != params["rate"]
        ):
            # Its slot learnt now (a per-key slot, or limits only this worker's task
            # knows): on the row, so the count below includes it and claims see it.
            self.tx.run(
                "mark_flow",
                run_id=row["run_id"],
                key=row["key"],
                flow_by=flow.key,
                **params,
            )
        self.tx.run("flow_lock", **params)
        self.locked.add(c.key)
        taken = self.tx.one("flow_take", undecided=self.store._list(undecided), **params)
        if taken is not None:
            return True
        self._refuse(c)
        if flow.rate is not None:
            self._note_window()
        return False

    def _refuse(self, c: _Candidate) -> None:
        """Back to the queue as it was, its slot now on its row."""
        self.tx.run(
            "unclaim_step",
            id=c.row["id"],
            attempt=c.row["attempt"],
            flow_key=c.key,
            now=self.store.clock.now(),
        )

    def _note_window(self) -> None:
        row = self.tx.one("flow_next_window", now=self.store.clock.now())
        if row is not None and row["due_in"] is not None:
            due = max(float(row["due_in"]), 0.0)
            self.next_in = due if self.next_in is None else min(self.next_in, due)

    def short_claim(self, defaults: Mapping[str, TaskDefaults]) -> None:
        """A claim got fewer steps than it asked for: when limits are in play here
        (the claimer's tasks have some, or it met limited steps), learn when a full
        window opens, so the worker comes back then."""
        if self.store in _seen or any(d.flow is not None for d in defaults.values()):
            self._note_window()


def _row_limits(row: dict[str, Any], defaults: TaskDefaults | None) -> FlowLimits | None:
    """The limits a claimed row is held to: its own, the claiming worker's task's under them."""
    rate = None
    if row.get("flow_rate") is not None and row.get("flow_window") is not None:
        rate = (int(row["flow_rate"]), float(row["flow_window"]))
    own = FlowLimits(concurrency=row.get("flow_concurrency"), key=row.get("flow_by"), rate=rate)
    flow = own.over(None if defaults is None else defaults.flow)
    return flow if flow.limited else None
