"""The rest of the Store contract: waking workers, specs by hash, closing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from legato import Client, LegatoError, RunStatus, StoreError, WaitTimeout, Worker, Workflow
from legato.store.base import ClaimRequest
from legato.worker.worker import TickResult

from .helpers import ALL_TASKS, claim, failed, ok, report
from .tasks import echo, noop


def chain() -> Workflow:
    wf = Workflow("woken")
    a = wf.step("a", echo, x=1)
    wf.step("b", echo, x=a.output)
    return wf


#: a wait far longer than any test here may take: only a wake-up ends it in time
LONG = 30.0
#: how soon a wake-up must end it
PROMPT = 2.0


class Waiter:
    """Waits for work in its own thread, as a worker's listener does.

    Before the constructor returns it has connected (on PostgreSQL: LISTENed)
    and forgotten any wake-up queued earlier; :meth:`wait` then starts one wait.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ready = threading.Event()
        self.go = threading.Event()
        self.woke: bool | None = None
        self.elapsed: float | None = None
        self.timeout = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        store = self.client.store
        while store.wait_for_work(0.01):  # connect, and forget anything queued earlier
            pass
        self.ready.set()
        if not self.go.wait(60):
            return
        started = time.monotonic()
        self.woke = store.wait_for_work(self.timeout)
        self.elapsed = time.monotonic() - started

    def wait(self, timeout: float) -> None:
        """Start waiting, for at most ``timeout`` seconds."""
        self.timeout = timeout
        self.go.set()

    def outcome(self, within: float) -> tuple[bool | None, float | None]:
        """Whether the wait woke, and after how long; ``(None, None)`` while it still
        waits ``within`` seconds from now."""
        self.thread.join(within)
        if self.thread.is_alive():
            return None, None
        return self.woke, self.elapsed

    def result(self, timeout: float) -> tuple[bool | None, float | None]:
        self.wait(timeout)
        return self.outcome(timeout + 10)


def assert_woken_promptly(waiter: Waiter) -> None:
    woke, elapsed = waiter.outcome(within=PROMPT + 1)
    assert woke is not None, f"still waiting {PROMPT + 1}s later: nothing woke it"
    assert woke is True and elapsed is not None and elapsed < PROMPT, (woke, elapsed)


def test_new_work_wakes_a_waiting_worker(db_url: str) -> None:
    with Client(db_url) as waiting, Client(db_url) as starting:
        waiter = Waiter(waiting)
        waiter.wait(LONG)
        starting.start(chain())  # whether it already waits or not, the wake-up arrives
        assert_woken_promptly(waiter)


_START_ELSEWHERE = """
import sys
import legato

@legato.task(name="elsewhere.noop")
def noop() -> int:
    return 1

wf = legato.Workflow("elsewhere")
wf.step("a", noop)
with legato.Client(sys.argv[1]) as client:
    client.start(wf)
"""


def test_work_queued_by_another_process_wakes_a_waiting_worker(db_url: str) -> None:
    """Across processes: PostgreSQL by NOTIFY, SQLite by the counter beside the file."""
    with Client(db_url) as waiting:
        waiter = Waiter(waiting)
        waiter.wait(LONG)
        subprocess.run([sys.executable, "-c", _START_ELSEWHERE, db_url], check=True, timeout=60)
        assert_woken_promptly(waiter)


def test_a_notify_on_the_channel_from_any_session_wakes_a_waiting_worker(pg_url: str) -> None:
    """Workers LISTEN on ``legato_work``: a NOTIFY there from any session (another
    process, another legato version, an operator) wakes them at once."""
    with Client(pg_url) as waiting, psycopg.connect(pg_url, autocommit=True) as other:
        waiter = Waiter(waiting)
        waiter.wait(LONG)
        other.execute("NOTIFY legato_work")  # the channel's name, as other processes send it
        assert_woken_promptly(waiter)


def test_waiting_without_work_times_out(db_url: str) -> None:
    with Client(db_url) as waiting:
        woke, elapsed = Waiter(waiting).result(0.3)
    assert woke is False
    assert elapsed is not None and elapsed >= 0.25


def test_work_claimed_in_the_same_transaction_wakes_nobody(db_url: str) -> None:
    with Client(db_url) as waiting, Client(db_url) as working:
        working.start(chain())
        [a] = claim(working)
        waiter = Waiter(waiting)
        request = ClaimRequest(
            worker_id="w1", queues=("default",), tasks=ALL_TASKS, limit=5, lease=30
        )
        outcome = report(working, [ok(a, 1)], request)
        assert [s.step_id for s in outcome.claimed] == ["b"]  # queued and taken at once
        woke, _ = waiter.result(0.3)
        assert woke is False


def test_a_retry_queued_now_wakes_workers(db_url: str) -> None:
    with Client(db_url) as waiting, Client(db_url) as working:
        wf = Workflow("retry_wakes")
        wf.step("a", echo, x=1, retry={"max_attempts": 2, "delay": 0})
        working.start(wf)
        [a] = claim(working)
        waiter = Waiter(waiting)
        waiter.wait(LONG)
        report(working, [failed(a)])
        assert_woken_promptly(waiter)


def listening(store: Any) -> threading.Event:
    """Set once ``store.wait_for_work`` has returned once: from then on it is listening.

    It wraps the store's own method and changes nothing it does. After one
    call the PostgreSQL store holds a connection that LISTENs (notifications
    queue up on it between calls), and the SQLite store has noted the wake-up
    generation that any later wake-up changes.
    """
    ready = threading.Event()
    real = store.wait_for_work

    def wait_for_work(timeout: float) -> bool:
        try:
            return bool(real(timeout))
        finally:
            ready.set()

    store.wait_for_work = wait_for_work
    return ready


def test_a_worker_that_polls_rarely_claims_new_work_at_once(db_url: str) -> None:
    """With ``poll_interval=30`` only a wake-up lets the worker claim in time: LISTEN/NOTIFY
    on PostgreSQL, the in-process wake-up on SQLite (the run is started by another client)."""
    wf = Workflow("woken_worker")
    wf.step("a", echo, x="woken")
    with Client(db_url) as serving, Client(db_url) as starting:
        ready = listening(serving.store)
        worker = Worker(serving, worker_id="sleeper", poll_interval=LONG)
        ticked = threading.Event()
        errors: list[BaseException] = []

        def until(tick: TickResult) -> bool:
            ticked.set()
            return False

        def serve() -> None:
            try:
                worker.run(until=until)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=serve, name="run-sleeper", daemon=True)
        thread.start()
        try:
            # Its first tick found nothing; it now sleeps up to 30 s, listening.
            assert ticked.wait(10), "the worker never ticked"
            assert ready.wait(10), "the worker never waited for work"
            began = time.monotonic()
            run_id = starting.start(wf)
            try:
                run = starting.wait(run_id, timeout=PROMPT, poll_interval=0.01)
            except WaitTimeout:
                pytest.fail(f"the worker did not run new work within {PROMPT}s: not woken")
            took = time.monotonic() - began
        finally:
            worker.stop()
            thread.join(10)
            worker.close()
    assert not thread.is_alive(), "the worker did not stop"
    assert errors == []
    assert took < PROMPT
    assert run.status is RunStatus.COMPLETED
    assert (run.steps["a"].worker, run.steps["a"].output) == ("sleeper", "woken")


def test_get_spec_by_hash(client: Client) -> None:
    wf = Workflow("by_hash")
    wf.step("n", noop)
    client.start(wf)
    spec = client.store.get_spec(wf.spec.content_hash)
    assert spec == wf.spec and spec.content_hash == wf.spec.content_hash
    with pytest.raises(LegatoError, match="no stored workflow spec with hash 0000"):
        client.store.get_spec("0000")


def test_a_closed_store_refuses_work(db_url: str) -> None:
    client = Client(db_url)
    wf = Workflow("closing")
    wf.step("n", noop)
    run_id = client.start(wf)
    client.close()
    with pytest.raises(StoreError):
        client.get(run_id)
    with Client(db_url) as again:
        assert again.get(run_id).id == run_id
