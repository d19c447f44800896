"""What every peer benchmark shares: the five workloads, fresh PostgreSQL databases,
worker processes that are always reaped, the clock, and the JSON lines printed.

Each peer script runs its own workers (``script.py worker ...``) and drives them
(``script.py --runs 3``). A workload is timed from the moment the driver starts
submitting work, with every worker already running and idle, until the peer has
recorded the last job as finished; the driver learns that by polling the peer's own
tables (or, for Celery, a Redis counter) every few milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

PG_ADMIN = os.environ.get("PEERS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PEERS_BENCH_REDIS", "redis://127.0.0.1:6379")

W1_JOBS = 2_000
W2_STEPS = 100
W3_WIDTH = 200
W4_RUNS = 200
W4_STEPS = 3
DAG_LAYERS = 100
DAG_WIDTH = 100
W5_STEPS = DAG_LAYERS * DAG_WIDTH

WORKLOADS = ("W1", "W2", "W3", "W4", "W5")


@dataclass(frozen=True)
class Workload:
    label: str
    unit: str
    #: the figure reported for a run that took ``seconds``
    value: Callable[[float], float]


SPECS = {
    "W1": Workload("2,000 independent one-step jobs", "jobs/s", lambda s: W1_JOBS / s),
    "W2": Workload("one 100-step chain", "ms/step", lambda s: s * 1000 / W2_STEPS),
    "W3": Workload("1 -> 200 parallel -> 1", "s", lambda s: s),
    "W4": Workload("200 runs of 3 sequential steps", "runs/s", lambda s: W4_RUNS / s),
    "W5": Workload("10,000-step DAG (100 layers x 100)", "steps/s", lambda s: W5_STEPS / s),
}


def dag_successors(layer: int, i: int) -> list[tuple[int, int]]:
    """Steps that need step (layer, i): step (l, j) needs (l-1, j) and (l-1, j+1 mod width),
    the same layered DAG as legato's own benchmark."""
    if layer + 1 >= DAG_LAYERS:
        return []
    return [(layer + 1, i), (layer + 1, (i - 1) % DAG_WIDTH)]


DAG_NEEDS = 2  # every step after the first layer waits for two steps


# -- PostgreSQL -------------------------------------------------------------------


@contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped (with its sessions) after."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    base = PG_ADMIN.rpartition("/")[0]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


JOIN_TABLE_SQL = """
CREATE TABLE bench_join (
    key text PRIMARY KEY,
    remaining int NOT NULL
)
"""

# -- worker processes -------------------------------------------------------------


class Workers:
    """Worker processes, each in its own process group so that killing the group
    takes any children (Celery's pool, DBOS's threads) with it."""

    def __init__(self, commands: Sequence[Sequence[str]], env: dict[str, str] | None = None):
        self.procs: list[subprocess.Popen[bytes]] = []
        full_env = {**os.environ, **(env or {})}
        for command in commands:
            self.procs.append(
                subprocess.Popen(
                    list(command),
                    stdout=subprocess.PIPE,
                    stderr=None,
                    env=full_env,
                    start_new_session=True,
                )
            )

    def wait_ready(self, timeout: float = 60.0, marker: bytes = b"ready") -> None:
        """Block until every worker has printed ``marker`` on a line of its own."""
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            assert proc.stdout is not None
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("workers did not start in time")
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"worker exited with {proc.wait()} before it was ready")
                if line.strip() == marker:
                    break

    def stop(self) -> None:
        """Ask each worker to shut down (SIGTERM to the worker itself, so that a
        supervisor such as Celery's stops its own children), then kill whatever is
        left of its process group."""
        for proc in self.procs:
            with suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@contextmanager
def workers(
    commands: Sequence[Sequence[str]], env: dict[str, str] | None = None, settle: float = 0.5
) -> Iterator[Workers]:
    """Start the workers, wait until each says it is ready, and always reap them."""
    group = Workers(commands, env)
    try:
        group.wait_ready()
        time.sleep(settle)  # let each finish subscribing (LISTEN, first poll) before timing
        yield group
    finally:
        group.stop()


def announce_ready() -> None:
    """Called by a worker once it is connected and about to take work."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()


def wait_until(done: Callable[[], bool], timeout: float, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the workload did not finish in time")
        time.sleep(interval)


# -- the driver -------------------------------------------------------------------


def parse_args(
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="timed runs per workload (median)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    # SIGTERM ends the driver through its finally blocks, which stop the workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    return args


def report(
    system: str,
    version: str,
    database: str,
    workload: str,
    seconds: list[float],
    workers: str,
    notes: str = "",
    submit_seconds: list[float] | None = None,
    variant: str = "",
) -> dict[str, object]:
    """Print and return one JSON line: the figure of each run and their median."""
    spec = SPECS[workload]
    runs = [round(spec.value(s), 3) for s in seconds]
    row: dict[str, object] = {
        "system": system,
        "version": version,
        "database": database,
        "workload": workload,
        "value": round(statistics.median(runs), 3),
        "unit": spec.unit,
        "runs": runs,
        "median": round(statistics.median(runs), 3),
        "seconds": [round(s, 4) for s in seconds],
        "workers": workers,
    }
    if variant:  # a setting other than the peer's usual one, shown beside its name
        row["variant"] = variant
    if submit_seconds:
        row["submit_seconds"] = [round(s, 4) for s in submit_seconds]
    if notes:
        row["notes"] = notes
    print(json.dumps(row), flush=True)
    return row


def timed(
    submit: Callable[[], object], finished: Callable[[], bool], timeout: float
) -> tuple[float, float]:
    """Seconds from the start of ``submit`` until ``finished`` first holds, and the
    seconds that ``submit`` itself took (workers start on the first job meanwhile)."""
    start = time.perf_counter()
    submit()
    submitted = time.perf_counter() - start
    wait_until(finished, timeout)
    return time.perf_counter() - start, submitted
