"""DBOS Transact (durable workflows on SQLite or PostgreSQL) on the five workloads.

DBOS's unit is a workflow whose steps are checkpointed one after another; parallel
work is child workflows enqueued on a queue and awaited through their handles. So:

- W1: 2,000 workflows of one step each; W4: 200 workflows of 3 steps; both enqueued
  by a ``DBOSClient`` in one transaction (``enqueue_in_transaction``).
- W2: one workflow of 100 steps.
- W3: one workflow: a step, 200 child workflows of one step enqueued on the same
  queue and awaited, then a last step (the fan-out pattern of DBOS's queue tutorial).
- W5: the DAG has no native form. It runs as one workflow whose 10,000 steps run in
  topological order (layer by layer), as a DBOS user writes a workflow in code; its
  parallelism is not used, only one worker is busy.

    benchmarks/peers/.venv/bin/python benchmarks/peers/dbos_bench.py --database sqlite
    benchmarks/peers/.venv/bin/python benchmarks/peers/dbos_bench.py --database postgres

Workers: 2 processes, each a launched DBOS application (its own ``executor_id``)
dequeuing from one queue registered with ``polling_interval_sec=0.01`` (DBOS polls
its queues; the default of 1 s would dominate W2 and W3); W3's parent awaits its
children with the same 10 ms polling interval.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import harness
import sqlalchemy as sa
from dbos import DBOS, DBOSClient

QUEUE = "bench"
POLL = 0.01
WORKERS = f"2 processes, DBOS queue polling_interval_sec={POLL}, no concurrency limit"


@DBOS.step()
def noop() -> int:
    return 1


@DBOS.workflow(name="one")
def one() -> None:
    noop()


@DBOS.workflow(name="chain")
def chain(n: int) -> None:
    for _ in range(n):
        noop()


@DBOS.workflow(name="fan")
def fan() -> None:
    noop()
    children = [DBOS.enqueue_workflow(QUEUE, one) for _ in range(harness.W3_WIDTH)]
    for child in children:
        child.get_result(polling_interval_sec=POLL)
    noop()


@DBOS.workflow(name="dag")
def dag() -> None:
    for _layer in range(harness.DAG_LAYERS):
        for _i in range(harness.DAG_WIDTH):
            noop()


# -- worker -----------------------------------------------------------------------


def serve(url: str, executor_id: str) -> None:
    DBOS(
        config={
            "name": "peers-bench",
            "system_database_url": url,
            "executor_id": executor_id,
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    DBOS.register_queue(QUEUE, polling_interval_sec=POLL)
    harness.announce_ready()
    threading.Event().wait()


# -- driver -----------------------------------------------------------------------

#: workflow name and arguments of each workflow a workload starts
STARTS: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "W1": [("one", ())] * harness.W1_JOBS,
    "W2": [("chain", (harness.W2_STEPS,))],
    "W3": [("fan", ())],
    "W4": [("chain", (harness.W4_STEPS,))] * harness.W4_RUNS,
    "W5": [("dag", ())],
}


@contextmanager
def system_database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'dbos.sqlite'}"
    else:
        with harness.pg_database("peer_dbos") as url:
            yield url


def engine_url(url: str) -> str:
    """SQLAlchemy's name for the same database, with the installed psycopg driver."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def bench(workload: str, runs: int, kind: str) -> None:
    timings = []
    with system_database(kind) as url:
        first, second = ([sys.executable, __file__, "worker", url, f"w{n}"] for n in range(2))
        # one after the other: the first creates the system database's tables
        with harness.workers([first]), harness.workers([second]):
            client = DBOSClient(system_database_url=url)
            engine = sa.create_engine(engine_url(url))
            table = "workflow_status" if kind == "sqlite" else "dbos.workflow_status"
            try:

                def submit() -> None:
                    with engine.begin() as conn:
                        for name, args in STARTS[workload]:
                            options = {"workflow_name": name, "queue_name": QUEUE}
                            client.enqueue_in_transaction(conn, options, *args)  # type: ignore[arg-type]

                def count(statuses: tuple[str, ...]) -> int:
                    with engine.connect() as conn:
                        query = sa.text(f"SELECT count(*) FROM {table} WHERE status IN :s")
                        query = query.bindparams(sa.bindparam("s", expanding=True))
                        return int(conn.execute(query, {"s": list(statuses)}).scalar_one())

                for _ in range(runs):
                    timings.append(
                        harness.timed(submit, lambda: count(("ENQUEUED", "PENDING")) == 0, 300)
                    )
                failed = count(("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"))
                assert failed == 0, f"{failed} workflows did not succeed"
            finally:
                client.destroy()
                engine.dispose()
    harness.report(
        "DBOS",
        version("dbos"),
        kind,
        workload,
        [total for total, _ in timings],
        WORKERS,
        submit_seconds=[submitted for _, submitted in timings],
    )


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        serve(sys.argv[2], sys.argv[3])
        return
    args = harness.parse_args(extra=options)
    for workload in args.workloads:
        bench(workload, args.runs, args.database)


if __name__ == "__main__":
    main()
