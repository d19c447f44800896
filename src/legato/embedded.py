"""``legato.run``: start a run and work it to the end in this process."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from legato.client import Client, WorkflowLike, seconds_option
from legato.errors import WaitTimeout
from legato.model.runs import Run
from legato.worker.worker import TickResult, Worker

__all__ = ["run", "work_until_finished"]


def run(
    workflow: WorkflowLike,
    params: Mapping[str, Any] | None = None,
    *,
    url: str | None = None,
    concurrency: int = 4,
    timeout: float | None = None,
    **start_options: Any,
) -> Run:
    """Start ``workflow`` (or the workflow of that name, found as
    :meth:`Client.start <legato.Client.start>` finds it) and run its steps in this
    process until the run ends.

    The run is stored like any other (default: ``LEGATO_URL``, else
    ``legato.db`` in the working directory), so it can be inspected afterwards,
    and if this process dies another worker can finish it. Ctrl-C hands the
    steps still running back to the queue and raises ``KeyboardInterrupt``;
    ``timeout`` does the same and raises :class:`~legato.WaitTimeout`. Either
    way ``legato worker`` carries the run on.
    """
    timeout = seconds_option(timeout, "timeout", allow_zero=False)
    with Client(url) as client:
        run_id = client.start(workflow, params, **start_options)
        return work_until_finished(client, run_id, concurrency=concurrency, timeout=timeout)


def work_until_finished(
    client: Client,
    run_id: str,
    *,
    concurrency: int = 4,
    timeout: float | None = None,
    worker: Worker | None = None,
) -> Run:
    """Work only this run's steps until it finishes; return the finished run.

    A run that fails while other steps of it are running is finished, but those
    steps still run to the end and their results are recorded (as a worker
    elsewhere would), so this returns once they have reported too. If the
    worker is stopped first (Ctrl-C, :meth:`Worker.stop`) this raises
    ``KeyboardInterrupt``, and after ``timeout`` seconds :class:`WaitTimeout`:
    it never returns a run that is still going.
    """
    worker = worker or Worker(
        client,
        concurrency=concurrency,
        root_run_id=run_id,
        poll_interval=0.1,
        on_signal="interrupt",
    )
    timeout = seconds_option(timeout, "timeout", allow_zero=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    run_over = timed_out = False

    def finished(tick: TickResult) -> bool:
        nonlocal run_over, timed_out
        if not run_over and (
            run_id in tick.finished_runs
            or (tick.idle and client.get(run_id, with_steps=False).finished)
        ):
            run_over = True  # its unstarted steps are cancelled: nothing more is claimed
        if run_over and worker.idle:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = not run_over
            return True
        return False

    try:
        worker.run(until=finished)
    finally:
        worker.close()
    if timed_out:
        raise WaitTimeout(client.still_running_message(run_id, timeout))
    if not run_over:
        raise KeyboardInterrupt  # stopped before the run ended: it is left for a worker
    return client.get(run_id)
