"""PostgreSQL restarted under running workers: they reconnect, and every run completes.

The restart needs a server of its own, so other tests' connections are not cut:
a private cluster is made with ``initdb`` in the test's folder (as the
``postgres`` user when the tests run as root, since PostgreSQL refuses to run
as root), started on a free port, and restarted with ``pg_ctl restart -m fast``
while two ``legato worker`` processes work through 60 runs of five chained
steps. Every run must complete with the right output, each step's completion
must be recorded once, and the workers must log the outage as a few lines,
not a storm of tracebacks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import psycopg
import pytest

from legato import Client, RunStatus, Workflow

from .support import read_log, wait_until
from .tasks import add_plain

pytestmark = pytest.mark.chaos

RUNS = 60
STEPS = 5
TESTS = Path(__file__).resolve().parents[1]


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    assert found, "PostgreSQL's server programs (initdb, pg_ctl) are needed for this test"
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A throwaway PostgreSQL server in ``folder``, run as ``postgres`` when we are root."""

    def __init__(self, folder: Path) -> None:
        self.bin = _bin_dir()
        self.data = folder / "pgdata"
        self.log = folder / "postgres.log"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=check)

    def init(self) -> None:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.data.parent, "postgres")
            shutil.chown(self.log.parent, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def pg_ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-m", "fast", "-w", "-t", "60",
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", check=False)


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("cluster")
    if os.geteuid() == 0:
        folder.chmod(0o755)
        for parent in folder.parents:  # postgres must reach its data folder
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    server = Cluster(folder)
    server.init()
    server.pg_ctl("start")
    try:
        yield server
    finally:
        server.stop()


def chain() -> Workflow:
    wf = Workflow("restarted_chain")
    value = wf.param("seed", type="int")
    previous = None
    for i in range(STEPS):
        x = value if previous is None else previous.output
        previous = wf.step(
            f"s{i}",
            add_plain,
            step=f"s{i}",
            x=x,
            hold=0.02,
            log=wf.param("log"),
            run="${{ run.id }}",
        )
    assert previous is not None
    wf.outputs(total=previous.output)
    return wf


def _serving(err: Path) -> bool:
    return "serving" in err.read_text(errors="replace")


def test_workers_ride_out_a_postgres_restart(cluster: Cluster, tmp_path: Path) -> None:
    log = str(tmp_path / "effects.log")
    url = cluster.url
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        with Client(url) as client:
            run_ids = [client.start(chain(), {"seed": i, "log": log}) for i in range(RUNS)]
        for n in range(2):
            err = tmp_path / f"worker-{n}.err"
            with open(err, "wb") as stream:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "legato", "worker", "--import", "chaos.tasks",
                     "--url", url, "--lease", "5s"],
                    stdout=subprocess.DEVNULL,
                    stderr=stream,
                    env={**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1"},
                    start_new_session=True,
                )  # fmt: skip
            procs.append((proc, err))
        for _, err in procs:
            wait_until(partial(_serving, err), 60, what="a worker to start")
        wait_until(lambda: len(read_log(log)) > 40, 60, what="the workers to get going")
        cluster.pg_ctl("restart")  # every connection is cut; the server comes back
        with Client(url) as client:

            def all_done() -> bool:
                failed = client.list_runs(status="failed", limit=1)
                assert not failed, client.get(failed[0].id).error
                return len(client.list_runs(status="completed", limit=RUNS + 1)) == RUNS

            wait_until(all_done, 180, interval=0.2, what="every run to complete")
            runs = [client.get(r) for r in run_ids]
            with psycopg.connect(url) as conn:
                completions = Counter(
                    (str(run_id), step)
                    for run_id, step in conn.execute(
                        "SELECT run_id, step_id FROM events WHERE type = 'step.completed'"
                    )
                )
    finally:
        for proc, _ in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    for i, run in enumerate(runs):
        assert run.status is RunStatus.COMPLETED
        assert run.outputs == {"total": i + STEPS}
    starts = Counter((r["run"], r["step"]) for r in read_log(log) if r["event"] == "start")
    assert set(starts) == {(r.id, f"s{i}") for r in runs for i in range(STEPS)}  # each ran
    assert set(completions.values()) == {1}, completions.most_common(3)
    assert len(completions) == RUNS * STEPS
    for _, err in procs:
        text = err.read_text(errors="replace")
        assert text.count("Traceback") == 0, text[-3000:]
        trouble = [line for line in text.splitlines() if "ERROR" in line or "WARNING" in line]
        assert len(trouble) < 40, "\n".join(trouble[-40:])
        print(f"{err.name}: {len(trouble)} error or warning lines", *trouble[:5], sep="\n  ")
    print(f"re-executions: {sum(starts.values()) - len(starts)}")
    # The restart really happened while they worked: the server says so.
    assert "database system is shut down" in cluster.log.read_text(errors="replace")
