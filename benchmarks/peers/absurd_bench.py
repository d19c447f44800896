"""Absurd (durable execution on PostgreSQL) on the five workloads.

Absurd's unit is a task whose steps are checkpoints (``ctx.step``), run in order by
one worker; parallel work is child tasks on another queue, awaited with
``ctx.await_task_result``. So:

- W1: 2,000 tasks of one step each, spawned one call at a time (the SDK has no
  batch spawn).
- W2: one task of 100 steps; W4: 200 tasks of 3 steps.
- W3: one task: a step, then a step that spawns 200 child tasks (one step each)
  on a second queue, then it awaits each child's result, then a last step.
- W5: the DAG has no native form. It runs as one task whose 10,000 steps are
  checkpointed in topological order (layer by layer), as an Absurd user writes a
  workflow in code; its parallelism is not used, only one worker is busy.

The schema comes from ``absurdctl init`` (the absurdctl package on PyPI bundles
``absurd.sql``).

    benchmarks/peers/.venv/bin/python benchmarks/peers/absurd_bench.py --runs 3

Workers: 2 processes, each running ``Absurd.start_worker`` on the main queue and,
in a second thread, on the children's queue; concurrency 1, batch 10, and a poll
every 10 ms (Absurd polls; the default of 250 ms would dominate W2 and W3).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Any

import harness
import psycopg
from absurd_sdk import Absurd

MAIN, KIDS = "bench", "kids"
POLL = 0.01
BATCH = 10
WORKERS = f"2 processes, start_worker(concurrency=1, batch_size={BATCH}, poll_interval={POLL})"


def noop() -> int:
    return 1


# -- worker -----------------------------------------------------------------------


def serve(dsn: str) -> None:
    main = Absurd(dsn, queue_name=MAIN)
    kids = Absurd(dsn, queue_name=KIDS)

    @main.register_task("one")
    def one(params: Any, ctx: Any) -> None:
        ctx.step("s0", noop)

    @main.register_task("chain")
    def chain(params: Any, ctx: Any) -> None:
        for i in range(params["n"]):
            ctx.step(f"s{i}", noop)

    @main.register_task("fan")
    def fan(params: Any, ctx: Any) -> None:
        ctx.step("first", noop)
        children = ctx.step(
            "spawn",
            lambda: [
                str(main.spawn("kid", {}, queue=KIDS)["task_id"]) for _ in range(harness.W3_WIDTH)
            ],
        )
        for task_id in children:
            ctx.await_task_result(task_id, queue_name=KIDS)
        ctx.step("last", noop)

    @main.register_task("dag")
    def dag(params: Any, ctx: Any) -> None:
        for layer in range(harness.DAG_LAYERS):
            for i in range(harness.DAG_WIDTH):
                ctx.step(f"l{layer}_{i}", noop)

    @kids.register_task("kid")
    def kid(params: Any, ctx: Any) -> None:
        ctx.step("s0", noop)

    def work(app: Absurd) -> None:
        app.start_worker(concurrency=1, batch_size=BATCH, poll_interval=POLL)

    threading.Thread(target=work, args=(kids,), daemon=True).start()
    harness.announce_ready()
    work(main)


# -- driver -----------------------------------------------------------------------


def install(dsn: str) -> None:
    absurdctl = Path(sys.executable).with_name("absurdctl")
    subprocess.run([str(absurdctl), "init", "-d", dsn], check=True, capture_output=True)
    app = Absurd(dsn)
    try:
        app.create_queue(MAIN)
        app.create_queue(KIDS)
    finally:
        app.close()


def submit(conn: psycopg.Connection[Any], app: Absurd, workload: str) -> None:
    """Spawn the workload's tasks in one transaction on ``app``'s connection, so that
    2,000 spawns cost one commit, as a user starting a batch would write it."""
    with conn.transaction():
        spawn(app, workload)


def spawn(app: Absurd, workload: str) -> None:
    if workload == "W1":
        for _ in range(harness.W1_JOBS):
            app.spawn("one", {}, queue=MAIN)
    elif workload == "W2":
        app.spawn("chain", {"n": harness.W2_STEPS}, queue=MAIN)
    elif workload == "W3":
        app.spawn("fan", {}, queue=MAIN)
    elif workload == "W4":
        for _ in range(harness.W4_RUNS):
            app.spawn("chain", {"n": harness.W4_STEPS}, queue=MAIN)
    else:
        app.spawn("dag", {}, queue=MAIN)


def bench(workload: str, runs: int) -> None:
    with harness.pg_database("peer_absurd") as dsn:
        install(dsn)
        command = [sys.executable, __file__, "worker", dsn]
        with (
            psycopg.connect(dsn, autocommit=True) as conn,
            psycopg.connect(dsn, autocommit=True) as probe,
            harness.workers([command, command]),
        ):
            app = Absurd(conn, queue_name=MAIN)

            def unfinished() -> int:
                row = probe.execute(
                    f"SELECT count(*) FROM absurd.t_{MAIN}"
                    " WHERE state NOT IN ('completed', 'failed', 'cancelled')"
                ).fetchone()
                assert row is not None
                return int(row[0])

            timings = [
                harness.timed(lambda: submit(conn, app, workload), lambda: unfinished() == 0, 300)
                for _ in range(runs)
            ]
            failed = probe.execute(
                f"SELECT (SELECT count(*) FROM absurd.t_{MAIN} WHERE state <> 'completed')"
                f" + (SELECT count(*) FROM absurd.t_{KIDS} WHERE state <> 'completed')"
            ).fetchone()
            assert failed is not None and failed[0] == 0, f"{failed[0]} tasks did not complete"
    harness.report(
        "Absurd",
        version("absurd-sdk"),
        "postgres",
        workload,
        [total for total, _ in timings],
        WORKERS,
        submit_seconds=[submitted for _, submitted in timings],
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        serve(sys.argv[2])
        return
    args: argparse.Namespace = harness.parse_args()
    for workload in args.workloads:
        bench(workload, args.runs)


if __name__ == "__main__":
    main()
