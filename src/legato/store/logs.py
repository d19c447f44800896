"""Step attempts' log lines: written with a worker's heartbeats and reports, read by run.

A worker hands the lines its tasks wrote to the transaction it commits anyway
(a heartbeat, or the report of results and claims), so a task writing
thousands of lines a second costs no commit of its own. The lines go last in
that transaction: their ids are drawn just before it commits, which keeps a
follower reading by id from passing lines committed late.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from legato.errors import ParamError, RunNotFoundError
from legato.model.logs import LogLine
from legato.store.base import LogEntry, Tx

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = ["read_logs", "write_logs"]


def write_logs(tx: Tx, lines: Sequence[LogEntry]) -> None:
    """Store ``lines``, skipping those stored already and those of step runs now gone."""
    tx.many(
        "insert_log",
        [
            {
                "step_run_id": line.step_run_id,
                "attempt": line.attempt,
                "seq": line.seq,
                "at": line.at,
                "level": line.level,
                "logger": line.logger,
                "message": line.message,
            }
            for line in lines
        ],
    )


def read_logs(
    store: SQLStore,
    run_id: str,
    *,
    step_id: str | None,
    attempt: int | None,
    after: int | None,
    limit: int,
) -> list[LogLine]:
    with store._transaction(write=False) as tx:
        if tx.one("get_run", id=run_id) is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        params = {"run_id": run_id, "attempt": attempt, "after": after or 0, "limit": limit}
        if step_id is None:
            rows = tx.all("run_logs", **params)
        else:
            step = tx.one("find_step", run_id=run_id, step_id=step_id)
            if step is None:
                raise ParamError(f"run {run_id} has no step {step_id!r}")
            rows = tx.all("step_logs", step_id=step_id, step_run_id=step["id"], **params)
    return [
        LogLine(
            id=int(row["id"]),
            run_id=store._id(row["run_id"]) or run_id,
            step_id=row["step_id"],
            attempt=int(row["attempt"]),
            seq=int(row["seq"]),
            at=store._ts(row["at"]),  # type: ignore[arg-type]
            level=row["level"],
            logger=row["logger"],
            message=row["message"],
        )
        for row in rows
    ]
