"""Cost per step by run size: is a 10,000-step DAG as cheap per step as a 3-step chain?

Runs no-op tasks with one in-process worker and reports, per workload and
database, the median over several runs of milliseconds per step, steps per
second and committed transactions per step.

    .venv/bin/python benchmarks/per_step.py                  # both databases, 3 runs each
    .venv/bin/python benchmarks/per_step.py --db sqlite --runs 5
    LEGATO_BENCH_PG=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python benchmarks/per_step.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from databases import database

import legato
from legato.define.builder import StepRef
from legato.worker.worker import TickResult


@legato.task(name="bench.noop")
def noop(*args: object) -> int:
    return 1


def chain(n: int) -> legato.Workflow:
    wf = legato.Workflow(f"chain_{n}")
    previous = None
    for i in range(n):
        previous = wf.step(f"s{i}", noop, needs=[previous] if previous else None)
    return wf


def layered_dag(layers: int, width: int) -> legato.Workflow:
    """``layers`` x ``width`` steps; each step needs two steps of the layer before."""
    wf = legato.Workflow(f"dag_{layers}x{width}")
    previous: list[StepRef] = []
    for layer in range(layers):
        current = []
        for i in range(width):
            needs = [previous[i], previous[(i + 1) % width]] if previous else None
            current.append(wf.step(f"l{layer}_{i}", noop, needs=needs))
        previous = current
    return wf


#: label -> (workflow factory, number of runs of it)
WORKLOADS: dict[str, tuple[Callable[[], legato.Workflow], int]] = {
    "2,000 independent one-step runs": (lambda: chain(1), 2000),
    "200 runs of a 3-step chain": (lambda: chain(3), 200),
    "1 run, chain of 100": (lambda: chain(100), 1),
    "1 run, DAG of 10,000 (100 layers x 100)": (lambda: layered_dag(100, 100), 1),
}


def count_commits(client: legato.Client) -> list[int]:
    """Wrap the store's transaction so every committed write transaction is counted."""
    counter = [0]
    original = client.store._transaction  # type: ignore[attr-defined]

    @contextmanager
    def counted(*, write: bool = True) -> Iterator[object]:
        with original(write=write) as tx:
            yield tx
        counter[0] += write  # read-only snapshots write nothing

    client.store._transaction = counted  # type: ignore[attr-defined]
    return counter


def measure(
    kind: str, make: Callable[[], legato.Workflow], runs: int, concurrency: int
) -> tuple[float, float, int, float]:
    """Start ``runs`` runs, then time one worker until all are finished.

    Returns ms per step, commits per step, steps, and ms per ``Client.start``.
    """
    wf = make()
    steps = len(wf.spec.steps) * runs
    with database(kind) as url, legato.Client(url) as client:
        client.list_runs(limit=1)  # open the connection before timing
        began = time.perf_counter()
        run_ids = {client.start(wf) for _ in range(runs)}
        start_ms = (time.perf_counter() - began) * 1000 / runs
        commits = count_commits(client)
        worker = legato.Worker(client, concurrency=concurrency, poll_interval=0.05)
        pending = set(run_ids)

        def all_finished(tick: TickResult) -> bool:
            pending.difference_update(tick.finished_runs)
            return not pending

        started = time.perf_counter()
        worker.run(until=all_finished)
        elapsed = time.perf_counter() - started
        worker.close()
        statuses = {client.get(r, with_steps=False).status for r in run_ids}
        assert statuses == {"completed"}, statuses
    return elapsed * 1000 / steps, commits[0] / steps, steps, start_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--workload", default="", help="only workloads whose label contains this text"
    )
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    header = f"ms/step (median of {args.runs})"
    print(f"| database | workload | steps | {header} | steps/s | commits/step | start ms/run |")
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        for label, (make, runs) in WORKLOADS.items():
            if args.workload not in label:
                continue
            samples = [measure(kind, make, runs, args.concurrency) for _ in range(args.runs)]
            ms = statistics.median(s[0] for s in samples)
            commits = statistics.median(s[1] for s in samples)
            start_ms = statistics.median(s[3] for s in samples)
            steps = samples[0][2]
            row = (
                f"| {kind} | {label} | {steps:,} | {ms:.3f} | {1000 / ms:,.0f} "
                f"| {commits:.2f} | {start_ms:.2f} |"
            )
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
