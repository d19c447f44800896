"""PgQueuer (PostgreSQL job queue) on the five workloads.

PgQueuer runs independent jobs; it has no chains, fan-in or DAGs. They are built the
way its users build them: a job enqueues its successors before it returns, and a job
with several predecessors is enqueued by whichever predecessor arrives last at a
counter row in the same database (``bench_join``).

    benchmarks/peers/.venv/bin/python benchmarks/peers/pgqueuer_bench.py --runs 3

Workers: 2 processes, each ``PgQueuer.run()`` with the defaults (batch_size 10 unless
``--batch-size``, LISTEN/NOTIFY wake-ups, completions flushed in batches) on an
asyncpg pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import asyncpg
import harness
import pgqueuer
from pgqueuer import AsyncpgPoolDriver, Job, PgQueuer, Queries

ENTRYPOINT = "step"
DEFAULT_BATCH = 10  # PgQueuer.run()'s own default

#: predecessors of the steps named in $1 have finished; returns the steps now ready
JOIN_ARRIVE = """
INSERT INTO bench_join (key, remaining) SELECT unnest($1::text[]), $2 - 1
ON CONFLICT (key) DO UPDATE SET remaining = bench_join.remaining - 1
RETURNING key, remaining
"""


def encode(**payload: object) -> bytes:
    return json.dumps(payload).encode()


async def enqueue_many(queries: Queries, payloads: list[bytes]) -> None:
    if payloads:
        await queries.enqueue([ENTRYPOINT] * len(payloads), list(payloads), [0] * len(payloads))


# -- worker -----------------------------------------------------------------------


async def serve(dsn: str, batch_size: int) -> None:
    # room for the dequeue loop, the listener, flushes and jobs enqueueing their successors,
    # capped: two workers must not take a shared server's connections
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=min(batch_size + 4, 14))
    driver = AsyncpgPoolDriver(pool)
    queries = Queries(driver)
    pgq = PgQueuer(driver)

    @pgq.entrypoint(ENTRYPOINT)
    async def step(job: Job) -> None:
        assert job.payload is not None
        p = json.loads(job.payload)
        kind = p["k"]
        if kind == "chain":  # W2, W4: each link enqueues the next
            if p["i"] + 1 < p["n"]:
                await enqueue_many(queries, [encode(k="chain", i=p["i"] + 1, n=p["n"])])
        elif kind == "first":  # W3: fan out
            await enqueue_many(queries, [encode(k="mid", r=p["r"])] * harness.W3_WIDTH)
        elif kind == "mid":  # W3: the last of the 200 to arrive enqueues the join
            rows = await pool.fetch(JOIN_ARRIVE, [f"{p['r']}:last"], harness.W3_WIDTH)
            if rows[0]["remaining"] == 0:
                await enqueue_many(queries, [encode(k="noop")])
        elif kind == "dag":  # W5: successors whose last predecessor this was
            successors = harness.dag_successors(p["l"], p["i"])
            if successors:
                keys = [f"{p['r']}:{layer}:{i}" for layer, i in successors]
                rows = await pool.fetch(JOIN_ARRIVE, keys, harness.DAG_NEEDS)
                ready = [row["key"].split(":") for row in rows if row["remaining"] == 0]
                await enqueue_many(
                    queries,
                    [encode(k="dag", r=p["r"], l=int(layer), i=int(i)) for _, layer, i in ready],
                )

    harness.announce_ready()
    await pgq.run(batch_size=batch_size)


# -- driver -----------------------------------------------------------------------


def submission(workload: str, run: int) -> list[bytes]:
    if workload == "W1":
        return [encode(k="noop")] * harness.W1_JOBS
    if workload == "W2":
        return [encode(k="chain", i=0, n=harness.W2_STEPS)]
    if workload == "W3":
        return [encode(k="first", r=run)]
    if workload == "W4":
        return [encode(k="chain", i=0, n=harness.W4_STEPS)] * harness.W4_RUNS
    return [encode(k="dag", r=run, l=0, i=i) for i in range(harness.DAG_WIDTH)]


async def install(dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await Queries(AsyncpgPoolDriver(pool)).install()
        await pool.execute(harness.JOIN_TABLE_SQL)
    finally:
        await pool.close()


async def time_run(dsn: str, workload: str, run: int) -> tuple[float, float]:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:
        queries = Queries(AsyncpgPoolDriver(pool))
        payloads = submission(workload, run)
        start = time.perf_counter()
        await enqueue_many(queries, payloads)
        submitted = time.perf_counter() - start
        deadline = time.monotonic() + 300
        while await pool.fetchval("SELECT count(*) FROM pgqueuer") > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workload} did not finish")
            await asyncio.sleep(0.005)
        return time.perf_counter() - start, submitted
    finally:
        await pool.close()


FAILURES = """
SELECT (SELECT count(*) FROM pgqueuer_log WHERE status::text = ANY($1))
     + (SELECT coalesce(sum(count), 0) FROM pgqueuer_statistics WHERE status::text = ANY($1))
"""


async def failures(dsn: str) -> int:
    """Jobs that did not succeed, in the log or already folded into the statistics."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(FAILURES, ["exception", "canceled", "deleted", "failed"]))
    finally:
        await conn.close()


def bench(workload: str, runs: int, batch_size: int) -> None:
    with harness.pg_database("peer_pgqueuer") as dsn:
        asyncio.run(install(dsn))
        command = [sys.executable, __file__, "worker", dsn, str(batch_size)]
        with harness.workers([command, command]):
            timings = [asyncio.run(time_run(dsn, workload, run)) for run in range(runs)]
        failed = asyncio.run(failures(dsn))
        assert failed == 0, f"{failed} jobs failed"
    harness.report(
        "PgQueuer",
        pgqueuer.__version__,
        "postgres",
        workload,
        [total for total, _ in timings],
        f"2 processes, PgQueuer.run(batch_size={batch_size}), asyncpg pool",
        submit_seconds=[submitted for _, submitted in timings],
        variant="" if batch_size == DEFAULT_BATCH else f"batch_size={batch_size}",
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help="jobs per dequeue (default 10)"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
        return
    args: argparse.Namespace = harness.parse_args(extra=options)
    for workload in args.workloads:
        bench(workload, args.runs, args.batch_size)


if __name__ == "__main__":
    main()
