"""Procrastinate (PostgreSQL job queue) on the five workloads.

Procrastinate runs independent jobs; chains, fan-in and DAGs are built as its users
build them: a job defers its successors (``defer_async``, ``batch_defer_async``)
before it returns, and a job with several predecessors is deferred by whichever
predecessor arrives last at a counter row in the same database (``bench_join``),
updated through the worker's own connection pool.

    benchmarks/peers/.venv/bin/python benchmarks/peers/procrastinate_bench.py --runs 3

Workers: 2 processes, each ``App.run_worker_async(concurrency=10)`` with async no-op
tasks, LISTEN/NOTIFY on (the default) and the default pool.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from importlib.metadata import version

import harness
import procrastinate

# The tasks carry explicit names, so an app built in the script's own module is safe.
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)

CONCURRENCY = 10
WORKERS = f"2 processes, run_worker_async(concurrency={CONCURRENCY}), async tasks"

#: predecessors of the steps named in ``keys`` have finished; returns the steps now ready
JOIN_ARRIVE = """
INSERT INTO bench_join (key, remaining) SELECT unnest(%(keys)s::text[]), %(needs)s - 1
ON CONFLICT (key) DO UPDATE SET remaining = bench_join.remaining - 1
RETURNING key, remaining
"""


def build(dsn: str) -> procrastinate.App:
    """An app on ``dsn`` with the benchmark's tasks; each task defers its successors."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    async def arrive(keys: list[str], needs: int) -> list[str]:
        rows = await app.connector.execute_query_all_async(JOIN_ARRIVE, keys=keys, needs=needs)
        return [row["key"] for row in rows if row["remaining"] == 0]

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="chain")
    async def chain(i: int, n: int) -> None:
        if i + 1 < n:
            await chain.defer_async(i=i + 1, n=n)

    @app.task(name="first")
    async def first(r: int) -> None:
        await mid.batch_defer_async(*[{"r": r}] * harness.W3_WIDTH)

    @app.task(name="mid")
    async def mid(r: int) -> None:
        if await arrive([f"{r}:last"], harness.W3_WIDTH):
            await noop.defer_async()

    @app.task(name="dag")
    async def dag(r: int, layer: int, i: int) -> None:
        successors = harness.dag_successors(layer, i)
        if not successors:
            return
        ready = await arrive([f"{r}:{sl}:{si}" for sl, si in successors], harness.DAG_NEEDS)
        if ready:
            await dag.batch_defer_async(
                *[{"r": r, "layer": int(k.split(":")[1]), "i": int(k.split(":")[2])} for k in ready]
            )

    return app


# -- worker -----------------------------------------------------------------------


async def serve(dsn: str) -> None:
    app = build(dsn)
    async with app.open_async():
        harness.announce_ready()
        await app.run_worker_async(concurrency=CONCURRENCY)


# -- driver -----------------------------------------------------------------------


async def submit(app: procrastinate.App, workload: str, run: int) -> None:
    tasks = app.tasks
    if workload == "W1":
        await tasks["noop"].batch_defer_async(*[{}] * harness.W1_JOBS)
    elif workload == "W2":
        await tasks["chain"].defer_async(i=0, n=harness.W2_STEPS)
    elif workload == "W3":
        await tasks["first"].defer_async(r=run)
    elif workload == "W4":
        await tasks["chain"].batch_defer_async(*[{"i": 0, "n": harness.W4_STEPS}] * harness.W4_RUNS)
    else:
        await tasks["dag"].batch_defer_async(
            *[{"r": run, "layer": 0, "i": i} for i in range(harness.DAG_WIDTH)]
        )


async def count(app: procrastinate.App, statuses: tuple[str, ...]) -> int:
    row = await app.connector.execute_query_one_async(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE status::text = ANY(%(s)s)",
        s=list(statuses),
    )
    return int(row["n"])


async def time_runs(dsn: str, workload: str, runs: int) -> list[tuple[float, float]]:
    app = build(dsn)
    timings = []
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(harness.JOIN_TABLE_SQL)
        command = [sys.executable, __file__, "worker", dsn]
        with harness.workers([command, command]):
            for run in range(runs):
                start = time.perf_counter()
                await submit(app, workload, run)
                submitted = time.perf_counter() - start
                deadline = time.monotonic() + 300
                while await count(app, ("todo", "doing")) > 0:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{workload} did not finish")
                    await asyncio.sleep(0.005)
                timings.append((time.perf_counter() - start, submitted))
        failed = await count(app, ("failed", "aborted"))
        assert failed == 0, f"{failed} jobs failed"
    return timings


def bench(workload: str, runs: int) -> None:
    with harness.pg_database("peer_procrastinate") as dsn:
        timings = asyncio.run(time_runs(dsn, workload, runs))
    harness.report(
        "Procrastinate",
        version("procrastinate"),
        "postgres",
        workload,
        [total for total, _ in timings],
        WORKERS,
        submit_seconds=[submitted for _, submitted in timings],
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        asyncio.run(serve(sys.argv[2]))
        return
    args: argparse.Namespace = harness.parse_args()
    for workload in args.workloads:
        bench(workload, args.runs)


if __name__ == "__main__":
    main()
