"""Real ``legato worker`` processes SIGKILLed under load: no run fails, nothing runs twice
that did not have to.

200 runs of five chained steps of a task that allows no retries; two worker
processes; every second one of them is SIGKILLed and a new one started, four
times. Every run completes with the right output, no attempt is spent on a
retry, and the only steps that ran twice are ones whose attempt was in flight
on a killed worker.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from legato import Client, RunStatus, Workflow

from .support import read_log, wait_until
from .tasks import add_one, logged

pytestmark = pytest.mark.chaos

RUNS = 200
STEPS = 5
KILLS = 4
TESTS = Path(__file__).resolve().parents[1]


def chain() -> Workflow:
    wf = Workflow("killed_chain")
    value = wf.param("seed", type="int")
    previous = None
    for i in range(STEPS):
        x = value if previous is None else previous.output
        previous = wf.step(f"s{i}", add_one, step=f"s{i}", x=x, hold=0.02, **logged(wf))
    assert previous is not None
    wf.outputs(total=previous.output)
    return wf


def _past(moment: float) -> bool:
    return time.monotonic() >= moment


class CliWorker:
    """``legato worker --import chaos.tasks`` in a child process."""

    def __init__(self, url: str, folder: Path, n: int) -> None:
        self.err_path = folder / f"cli-worker-{n}.err"
        with open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "legato",
                    "worker",
                    "--import",
                    "chaos.tasks",
                    "--url",
                    url,
                    "--lease",
                    "2s",
                    "--concurrency",
                    "4",
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1"},
            )
        self.pid = self.popen.pid

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def serving(self) -> bool:
        assert self.popen.poll() is None, self.stderr()
        return "serving queues" in self.stderr()

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)


def test_sigkilled_cli_workers_lose_no_run_and_repeat_only_what_was_in_flight(
    db_url: str, tmp_path: Path
) -> None:
    log = str(tmp_path / "effects.log")
    rng = random.Random(13)
    started: list[CliWorker] = []

    def spawn() -> CliWorker:
        worker = CliWorker(db_url, tmp_path, len(started))
        started.append(worker)
        return worker

    try:
        with Client(db_url) as client:
            wf = chain()
            run_ids = [
                client.start(wf, {"seed": i * 10, "log": log, "url": db_url}) for i in range(RUNS)
            ]
            alive = [spawn(), spawn()]
            for worker in alive:
                wait_until(worker.serving, 60, what="a worker to start")
            wait_until(lambda: len(read_log(log)) > 20, 60, what="the workers to get going")
            killed: list[CliWorker] = []
            for _ in range(KILLS):
                # The victim is a worker that is serving: it holds attempts in flight.
                victim = alive.pop(rng.randrange(len(alive)))
                victim.kill()
                killed.append(victim)
                due = time.monotonic() + 1.0  # one kill a second
                alive.append(spawn())
                wait_until(alive[-1].serving, 60, what="the replacement to start")
                wait_until(partial(_past, due), 5, what="the time of the next kill")

            def all_done() -> bool:
                failed = client.list_runs(status="failed", limit=1)
                assert not failed, client.get(failed[0].id).error
                return len(client.list_runs(status="completed", limit=RUNS + 1)) == RUNS

            wait_until(all_done, 180, interval=0.2, what="every run to complete")
            runs = [client.get(r) for r in run_ids]
    finally:
        for worker in started:
            if worker.popen.poll() is None:
                worker.kill()

    assert all(w.popen.returncode == -signal.SIGKILL for w in killed)
    for i, run in enumerate(runs):
        assert run.status is RunStatus.COMPLETED
        assert run.outputs == {"total": i * 10 + STEPS}
        for step in run.steps.values():
            assert step.status == "completed" and step.failures == 0  # no retry spent
            assert [a.status for a in step.attempts] == ["lost"] * step.lost + ["completed"]

    # Side effects: what ran more than once ran first on a killed worker, in flight.
    effects = read_log(log)
    starts = [
        (r["run"], r["step"], r["attempt"], r["pid"]) for r in effects if r["event"] == "start"
    ]
    assert len({(run, step, attempt) for run, step, attempt, _ in starts}) == len(starts)
    runs_of = Counter((run, step) for run, step, _, _ in starts)
    assert set(runs_of) == {(r.id, s) for r in runs for s in r.steps}
    re_executions = sum(n - 1 for n in runs_of.values())
    final = {(r.id, s.step_id): s.attempt for r in runs for s in r.steps.values()}
    killed_pids = {w.pid for w in killed}
    in_flight_on_killed = [
        (run, step, attempt)
        for run, step, attempt, pid in starts
        if pid in killed_pids and final[(run, step)] != attempt
    ]
    assert re_executions <= len(in_flight_on_killed)
    lost = sum(s.lost for r in runs for s in r.steps.values())
    assert lost >= len(in_flight_on_killed)  # each one is on record as a lost attempt
    assert 0 < lost <= KILLS * 4  # the kills cost attempts: at most four slots per victim
    print(
        f"{RUNS * STEPS} steps, {KILLS} kills: {re_executions} re-executions, "
        f"{len(in_flight_on_killed)} attempts in flight on killed workers, {lost} lost attempts"
    )
    for worker in started:
        if worker not in killed:
            assert "Traceback" not in worker.stderr(), worker.stderr()
