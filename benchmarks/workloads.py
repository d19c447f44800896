"""legato on the five comparison workloads, with real ``legato worker`` processes.

The same workloads the peer scripts in ``benchmarks/peers/`` run, timed the same
way: every worker process is started and registered first; the clock starts
when the driver starts submitting work and stops when the database records the
last run as finished (the driver polls every few milliseconds).

W1 2,000 independent one-step runs (runs/s), W2 one 100-step chain (ms per
step), W3 1 -> 200 parallel -> 1 (seconds), W4 200 runs of 3 sequential steps
(runs/s), W5 a 10,000-step DAG of 100 layers of 100 (steps/s). Tasks do
nothing. It also reports the statements, round trips and commits per step
that legato sent (the workers' and the driver's, counted by the stores
themselves: ``legato.store.counting``; the driver's polling is not counted).

Prints one JSON line per workload (the peers' format) and a markdown table:

    .venv/bin/python benchmarks/workloads.py                       # both databases
    .venv/bin/python benchmarks/workloads.py --db postgres --runs 3 --workload W2
    .venv/bin/python benchmarks/workloads.py --workers 2 --concurrency 4 --json
    .venv/bin/python benchmarks/workloads.py --workload W1 --concurrency 128 --pool asyncio
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from databases import database

import legato
from legato.define.builder import StepRef
from legato.store.counting import COUNTS, read_dir

HERE = Path(__file__).resolve().parent
TASKS = HERE / "bench_tasks.py"
ASYNC_TASKS = HERE / "bench_async_tasks.py"

W1_RUNS = 2_000
W2_STEPS = 100
W3_WIDTH = 200
W4_RUNS = 200
W4_STEPS = 3
DAG_LAYERS = 100
DAG_WIDTH = 100

UNITS = {"W1": "runs/s", "W2": "ms/step", "W3": "s", "W4": "runs/s", "W5": "steps/s"}
LABELS = {
    "W1": "2,000 independent one-step runs",
    "W2": "one 100-step chain",
    "W3": "1 -> 200 parallel -> 1",
    "W4": "200 runs of 3 sequential steps",
    "W5": "10,000-step DAG (100 layers x 100)",
}

sys.path.insert(0, str(HERE))
from bench_async_tasks import anoop  # noqa: E402
from bench_tasks import noop  # noqa: E402

#: the task each step calls: the asyncio pool serves only async def tasks
TASK: Any = noop


def chain(name: str, n: int) -> legato.Workflow:
    wf = legato.Workflow(name)
    previous = None
    for i in range(n):
        previous = wf.step(f"s{i}", TASK, needs=[previous] if previous else None)
    return wf


def fan(width: int) -> legato.Workflow:
    wf = legato.Workflow("fan")
    first = wf.step("first", TASK)
    middle = [wf.step(f"p{i}", TASK, needs=[first]) for i in range(width)]
    wf.step("last", TASK, needs=middle)
    return wf


def dag(layers: int, width: int) -> legato.Workflow:
    wf = legato.Workflow("dag")
    previous: list[StepRef] = []
    for layer in range(layers):
        current = []
        for i in range(width):
            needs = [previous[i], previous[(i + 1) % width]] if previous else None
            current.append(wf.step(f"l{layer}_{i}", TASK, needs=needs))
        previous = current
    return wf


#: workload -> (workflow, runs of it, steps in all, the figure from the seconds taken)
def workloads() -> dict[str, tuple[legato.Workflow, int, int, Callable[[float], float]]]:
    return {
        "W1": (chain("one", 1), W1_RUNS, W1_RUNS, lambda s: W1_RUNS / s),
        "W2": (chain("chain", W2_STEPS), 1, W2_STEPS, lambda s: s * 1000 / W2_STEPS),
        "W3": (fan(W3_WIDTH), 1, W3_WIDTH + 2, lambda s: s),
        "W4": (chain("three", W4_STEPS), W4_RUNS, W4_RUNS * W4_STEPS, lambda s: W4_RUNS / s),
        "W5": (
            dag(DAG_LAYERS, DAG_WIDTH),
            1,
            DAG_LAYERS * DAG_WIDTH,
            lambda s: DAG_LAYERS * DAG_WIDTH / s,
        ),
    }


@contextmanager
def workers(
    url: str, count: int, concurrency: int, counts_dir: str, pool: str = "thread"
) -> Iterator[None]:
    """``count`` ``legato worker`` processes, registered before this yields; always reaped.

    Each counts what it sends the database in a file in ``counts_dir``."""
    tasks = ASYNC_TASKS if pool == "asyncio" else TASKS
    command = [sys.executable, "-m", "legato", "worker", "--import", str(tasks)]
    env = {**os.environ, "LEGATO_URL": url, "LEGATO_COUNTS_DIR": counts_dir}
    procs = [
        subprocess.Popen(
            [*command, "--concurrency", str(concurrency), "--pool", pool],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        with legato.Client(url) as client:
            deadline = time.monotonic() + 60
            while len(client.store.live_workers()) < count:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise SystemExit("the worker processes did not start")
                time.sleep(0.05)
        yield
    finally:
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Unfinished:
    """Counts the runs not yet finished with one small query per look (its own connection)."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:"):
            import sqlite3

            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)

    def __call__(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM runs WHERE status IN ('pending', 'running', 'paused')"
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


def measure(
    kind: str,
    name: str,
    worker_count: int,
    concurrency: int,
    poll_every: float = 0.005,
    batched: bool = True,
    pool: str = "thread",
) -> dict[str, float]:
    wf, runs, steps, figure = workloads()[name]
    with database(kind) as url, tempfile.TemporaryDirectory() as counts_dir:
        with legato.Client(url) as client:
            client.start(chain("warm", 1))  # the schema and the task's defaults in place
        with (
            workers(url, worker_count, concurrency, counts_dir, pool),
            legato.Client(url) as client,
        ):
            unfinished = Unfinished(url)
            deadline = time.monotonic() + 30
            while unfinished():
                if time.monotonic() > deadline:
                    raise SystemExit("the warm-up run did not finish")
                time.sleep(0.01)
            before = read_dir(counts_dir) + COUNTS.snapshot()
            began = time.perf_counter()
            if runs > 1 and batched:
                client.start_many(wf, [{}] * runs)
            else:
                for _ in range(runs):
                    client.start(wf)
            while unfinished():
                time.sleep(poll_every)
            seconds = time.perf_counter() - began
            sent = read_dir(counts_dir) + COUNTS.snapshot() - before
            unfinished.close()
            failed = client.list_runs(status="failed", limit=1)
            if failed:
                raise SystemExit(f"{name}: a run failed: {failed[0].error}")
    return {
        "seconds": seconds,
        "value": figure(seconds),
        "steps": steps,
        "statements_per_step": sent.statements / steps,
        "round_trips_per_step": sent.round_trips / steps,
        "commits_per_step": sent.commits / steps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="steps per worker")
    parser.add_argument(
        "--pool",
        choices=["thread", "asyncio"],
        default="thread",
        help="the workers' pool; asyncio runs an async no-op task",
    )
    parser.add_argument("--workload", action="append", choices=sorted(UNITS))
    parser.add_argument("--json", action="store_true", help="only the JSON lines")
    parser.add_argument(
        "--one-by-one",
        action="store_true",
        help="start W1's and W4's runs with Client.start each, not Client.start_many",
    )
    args = parser.parse_args()
    global TASK
    TASK = anoop if args.pool == "asyncio" else noop
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    rows = []
    for kind in kinds:
        for name in args.workload or sorted(UNITS):
            samples = [
                measure(
                    kind,
                    name,
                    args.workers,
                    args.concurrency,
                    batched=not args.one_by_one,
                    pool=args.pool,
                )
                for _ in range(args.runs)
            ]
            line = {
                "system": "legato",
                "version": legato.__version__,
                "database": kind,
                "workload": name,
                "unit": UNITS[name],
                "runs": [round(s["value"], 3) for s in samples],
                "median": round(statistics.median(s["value"] for s in samples), 3),
                "concurrency": args.concurrency,
                "pool": args.pool,
            }
            for extra in ("statements_per_step", "round_trips_per_step", "commits_per_step"):
                if extra in samples[0]:
                    line[extra] = round(statistics.median(s[extra] for s in samples), 2)
            print(json.dumps(line), flush=True)
            rows.append(line)
    if not args.json:
        print(
            "\n| database | workload | median | unit | statements/step | round trips/step "
            "| commits/step | runs |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for line in rows:
            print(
                f"| {line['database']} | {line['workload']} {LABELS[line['workload']]} "
                f"| {line['median']:,} | {line['unit']} | {line['statements_per_step']} "
                f"| {line['round_trips_per_step']} | {line['commits_per_step']} | {line['runs']} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
