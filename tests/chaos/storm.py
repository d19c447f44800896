"""A kill storm: worker processes SIGKILLed at random while they work through many runs.

``storm(url, folder, runs=..., workers=..., kill_every=...)`` starts ``workers``
``legato worker`` processes on ``runs`` workflows of five chained steps, SIGKILLs
a random one every ``kill_every`` seconds and starts a replacement, until every
run has finished. Each step's task records its side effect in a table of its own
(``chaos_effects``, written by the task over its own connection, not by legato),
so afterwards one can check that every step's effect happened at least once,
that legato recorded each step's completion exactly once, and count the
re-executions. The test suite runs a short storm; ``benchmarks/chaos.py`` a long one.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from legato import Client, Workflow, task

STEPS = 5
TESTS = Path(__file__).resolve().parents[1]

_local = threading.local()


def _effects_conn(url: str) -> Any:
    conn = _local.__dict__.get(url)
    if conn is None:
        if url.startswith("sqlite:"):
            conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60, isolation_level=None)
        else:
            conn = psycopg.connect(url, autocommit=True)
        _local.__dict__[url] = conn
    return conn


def create_effects_table(url: str) -> None:
    conn = _effects_conn(url)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS chaos_effects (run_id TEXT NOT NULL, step TEXT NOT NULL, "
        "pid INTEGER NOT NULL)"
    )


@task(name="chaos.effect")
def effect(url: str, run: str, step: str, x: int, hold: float = 0.0) -> int:
    """``x + 1``, after writing its side effect; no retries: only a lost worker repeats it."""
    mark = "?" if url.startswith("sqlite:") else "%s"
    _effects_conn(url).execute(
        f"INSERT INTO chaos_effects (run_id, step, pid) VALUES ({mark}, {mark}, {mark})",
        (run, step, os.getpid()),
    )
    if hold:
        time.sleep(hold)
    return x + 1


def chain() -> Workflow:
    wf = Workflow("storm_chain")
    value = wf.param("seed", type="int")
    previous = None
    for i in range(STEPS):
        x = value if previous is None else previous.output
        previous = wf.step(
            f"s{i}",
            effect,
            url=wf.param("url"),
            run="${{ run.id }}",
            step=f"s{i}",
            x=x,
            hold=wf.param("hold", 0.01, type="float"),
        )
    assert previous is not None
    wf.outputs(total=previous.output)
    return wf


@dataclass
class StormReport:
    runs: int
    steps: int
    kills: int
    workers_started: int
    seconds: float
    re_executions: int
    lost_attempts: int
    completions: Counter[tuple[str, str]] = field(default_factory=Counter)
    effects: Counter[tuple[str, str]] = field(default_factory=Counter)
    outputs_ok: bool = True
    stderr_tracebacks: int = 0

    def __str__(self) -> str:
        return (
            f"{self.runs} runs x {STEPS} steps, {self.workers_started} worker processes, "
            f"{self.kills} SIGKILLs in {self.seconds:.1f} s: {self.re_executions} re-executions, "
            f"{self.lost_attempts} lost attempts on record"
        )


class _Worker:
    def __init__(self, url: str, folder: Path, n: int, concurrency: int) -> None:
        self.err = folder / f"storm-worker-{n}.err"
        with open(self.err, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "legato", "worker", "--import", "chaos.storm",
                 "--url", url, "--lease", "2s", "--concurrency", str(concurrency)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def serving(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(self.err.read_text(errors="replace"))
        return "serving" in self.err.read_text(errors="replace")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def storm(
    url: str,
    folder: Path,
    *,
    runs: int,
    workers: int = 4,
    kill_every: float = 2.0,
    max_kills: int | None = None,
    concurrency: int = 4,
    hold: float = 0.01,
    seed: int = 7,
    timeout: float = 600,
) -> StormReport:
    """Run the storm to the end and report what happened (asserting nothing itself)."""
    rng = random.Random(seed)
    create_effects_table(url)
    started: list[_Worker] = []
    killed = 0
    began = time.monotonic()
    try:
        with Client(url) as client:
            wf = chain()
            run_ids = [client.start(wf, {"seed": i, "url": url, "hold": hold}) for i in range(runs)]
            alive = [_Worker(url, folder, i, concurrency) for i in range(workers)]
            started.extend(alive)
            for w in alive:
                _wait(w.serving, 60, "a worker to start")

            def finished() -> bool:
                return (
                    len(client.list_runs(status="completed", limit=runs + 1))
                    + len(client.list_runs(status="failed", limit=runs + 1))
                    == runs
                )

            deadline = time.monotonic() + timeout
            next_kill = time.monotonic() + kill_every / 4  # the first soon, while busy
            while not finished():
                if time.monotonic() > deadline:
                    raise AssertionError(f"the runs did not finish within {timeout}s")
                if time.monotonic() >= next_kill and (max_kills is None or killed < max_kills):
                    victim = alive.pop(rng.randrange(len(alive)))
                    victim.kill()
                    killed += 1
                    replacement = _Worker(url, folder, len(started), concurrency)
                    started.append(replacement)
                    alive.append(replacement)
                    next_kill = time.monotonic() + kill_every
                time.sleep(0.05)
            seconds = time.monotonic() - began
            got = [client.get(r) for r in run_ids]
    finally:
        for w in started:
            w.kill()

    completions: Counter[tuple[str, str]] = Counter()
    effects: Counter[tuple[str, str]] = Counter()
    conn = _effects_conn(url)
    events = (
        "SELECT run_id, step_id FROM events WHERE type = 'step.completed'"
        if url.startswith("sqlite:")
        else "SELECT run_id::text, step_id FROM events WHERE type = 'step.completed'"
    )
    for run_id, step in conn.execute(events).fetchall():
        completions[(str(run_id), step)] += 1
    for run_id, step in conn.execute("SELECT run_id, step FROM chaos_effects").fetchall():
        effects[(str(run_id), step)] += 1
    lost = sum(s.lost for r in got for s in r.steps.values())
    outputs_ok = all(
        r.status == "completed" and r.outputs == {"total": i + STEPS} for i, r in enumerate(got)
    )
    tracebacks = sum(
        w.err.read_text(errors="replace").count("Traceback")
        for w in started
        if w.popen.returncode != -signal.SIGKILL
    )
    return StormReport(
        runs=runs,
        steps=runs * STEPS,
        kills=killed,
        workers_started=len(started),
        seconds=seconds,
        re_executions=sum(effects.values()) - len(effects),
        lost_attempts=lost,
        completions=completions,
        effects=effects,
        outputs_ok=outputs_ok,
        stderr_tracebacks=tracebacks,
    )
