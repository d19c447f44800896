"""Operations on one run from outside its workers: a signal, new variables, a cancel.

Each is one transaction that locks the run's row first (so the run cannot finish
between the check of its status and the change), then moves it on through a
:class:`~legato.store.unit.Unit`, exactly as a worker's batch does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from legato.errors import ConflictError, RunNotFoundError
from legato.payload import to_json
from legato.store.unit import Unit

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = ["cancel", "signal", "update_variables"]


def signal(
    store: SQLStore, run_id: str, name: str, payload: Any, *, sent_by: str | None = None
) -> str:
    """Deliver a signal to the step waiting for it, or keep it for the next one."""
    run_id = store._check_run_id(run_id)
    _, payload_json = to_json(
        payload, what=f"signal {name!r} payload", max_bytes=store.max_payload_bytes
    )

    def deliver(hints: set[str]) -> str:
        with store._transaction() as tx:
            # The run locked, so it cannot finish between this check and the
            # delivery (and keep a signal nobody will read).
            unit = Unit(store, tx, hints, actor=sent_by)
            unit.lock_runs({run_id, *hints})
            status = unit.runs.get(run_id)
            if status is None:
                raise RunNotFoundError(f"no run with id {run_id!r}")
            if status.finished:
                raise ConflictError(
                    f"run {run_id} is {status.value}: a signal can no longer reach it"
                )
            delivered = unit.progress.deliver_signal(run_id, name, payload_json, sent_by)
            unit.flush_events()
        return delivered

    return store.retrying(deliver)


def cancel(store: SQLStore, run_id: str, reason: str, *, actor: str | None = None) -> None:
    """End an unfinished run as cancelled, with its child runs."""
    run_id = store._check_run_id(run_id)

    def cancel(hints: set[str]) -> None:
        with store._transaction() as tx:
            unit = Unit(store, tx, hints, actor=actor)
            unit.lock_runs({run_id, *hints})
            status = unit.runs.get(run_id)
            if status is None:
                raise RunNotFoundError(f"no run with id {run_id!r}")
            if status.finished:
                raise ConflictError(f"run {run_id} is {status.value}: it cannot be cancelled")
            unit.cancel_run(run_id, reason, actor=actor)
            unit.flush_events()

    store.retrying(cancel)


def update_variables(
    store: SQLStore, run_id: str, values: Mapping[str, Any], *, actor: str | None = None
) -> dict[str, Any]:
    """Merge ``values`` into an unfinished run's variables; return them all."""
    run_id = store._check_run_id(run_id)
    plain, _ = to_json(dict(values), what="variables", max_bytes=store.max_payload_bytes)

    def update(hints: set[str]) -> dict[str, Any]:
        with store._transaction() as tx:
            return _update_variables(Unit(store, tx, hints, actor=actor), run_id, plain, actor)

    return store.retrying(update)


def _update_variables(
    unit: Unit, run_id: str, plain: dict[str, Any], actor: str | None
) -> dict[str, Any]:
    unit.lock_runs([run_id, *unit.hints])
    status = unit.runs.get(run_id)
    if status is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    if status.finished:
        raise ConflictError(f"run {run_id} is {status.value}: its variables are final")
    unit.progress.set_variables(run_id, plain, actor=actor)
    merged = unit.progress.variables(run_id)
    unit.flush_events()
    return merged
