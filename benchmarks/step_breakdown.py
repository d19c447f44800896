"""Where a chained step's time goes: one in-process worker working a chain of no-op steps.

Each step is stamped where the worker hands it to a thread, where its task
starts and ends, where the main loop takes its result, and around the
transaction that reports it and claims the next (wall time and the main
thread's CPU time: the difference is waiting, on the server or for a core).
Prints the median of each part over the chain's steps, and of the whole cycle
from one step's result taken to the next's.

    .venv/bin/python benchmarks/step_breakdown.py                    # both databases
    .venv/bin/python benchmarks/step_breakdown.py --db sqlite --steps 1000 --runs 5
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from concurrent.futures import Future
from typing import Any

from databases import database

import legato
from legato.store.base import ClaimedStep, StepResult
from legato.worker.worker import Worker, _Running

#: when each task call began and ended, in call order (the chain runs one at a time)
CALLS: list[tuple[float, float]] = []


@legato.task(name="bench.stamped")
def stamped() -> int:
    began = time.perf_counter()
    CALLS.append((began, time.perf_counter()))
    return 1


class StampedWorker(Worker):
    """A worker noting when each step is handed off, and when its result is taken."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handed: list[tuple[float, float]] = []
        self.queued: list[float] = []
        self.taken: list[float] = []
        self.transactions: list[tuple[float, float]] = []
        report_and_claim = self.store.report_and_claim

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return report_and_claim(*args, **kwargs)
            finally:
                if args and args[0]:  # a transaction that reported a result
                    self.transactions.append((time.perf_counter() - wall, time.thread_time() - cpu))

        self.store.report_and_claim = timed  # type: ignore[method-assign]

    def _start(self, claimed: ClaimedStep) -> None:
        began = time.perf_counter()
        super()._start(claimed)
        self.handed.append((began, time.perf_counter()))

    def _finished(self, entry: _Running, future: Future[StepResult]) -> None:
        super()._finished(entry, future)
        self.queued.append(time.perf_counter())

    def _drain(self) -> list[StepResult]:
        results = super()._drain()
        if results:
            self.taken.append(time.perf_counter())
        return results


def chain(n: int) -> legato.Workflow:
    wf = legato.Workflow(f"stamped_{n}")
    previous = None
    for i in range(n):
        previous = wf.step(f"s{i}", stamped, needs=[previous] if previous else None)
    return wf


def one_run(kind: str, steps: int) -> dict[str, float]:
    with database(kind) as url, legato.Client(url) as client:
        client.start(chain(1))  # the schema, the task's defaults, the caches warm
        warm = StampedWorker(client, concurrency=4)
        warm.run(until=lambda tick: bool(tick.finished_runs))
        warm.close()
        CALLS.clear()
        worker = StampedWorker(client, concurrency=4)
        run_id = client.start(chain(steps))
        began = time.perf_counter()
        worker.run(until=lambda tick: run_id in tick.finished_runs)
        seconds = time.perf_counter() - began
        worker.close()
    n = min(len(CALLS), len(worker.handed), len(worker.queued), len(worker.taken))
    handed, calls = worker.handed[:n], CALLS[:n]
    queued, taken = worker.queued[:n], worker.taken[:n]

    def median(values: list[float]) -> float:
        return statistics.median(values) * 1e6

    return {
        "ms/step (run started to finished)": seconds * 1000 / steps,
        "cycle, us": median([b - a for a, b in itertools.pairwise(taken)]),
        "hand-off call (_start), us": median([b - a for a, b in handed]),
        "hand-off to task start, us": median(
            [c[0] - h[0] for h, c in zip(handed, calls, strict=True)]
        ),
        "task call, us": median([c[1] - c[0] for c in calls]),
        "task end to result queued, us": median(
            [q - c[1] for c, q in zip(calls, queued, strict=True)]
        ),
        "task end to result taken, us": median(
            [t - c[1] for c, t in zip(calls, taken, strict=True)]
        ),
        "transaction wall, us": median([wall for wall, _ in worker.transactions]),
        "transaction CPU, us": median([cpu for _, cpu in worker.transactions]),
        "result taken to next hand-off, us": median(
            [h[0] - t for t, h in zip(taken, handed[1:], strict=False)]
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    for kind in kinds:
        runs = [one_run(kind, args.steps) for _ in range(args.runs)]
        print(f"\n{kind}: chain of {args.steps}, medians of {args.runs} runs")
        for name in runs[0]:
            values = [round(r[name], 3) for r in runs]
            print(f"  {name:36s} {statistics.median(values):9.3f}   {values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
