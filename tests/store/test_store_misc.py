"""The rest of the Store contract: waking workers, specs by hash, closing."""

from __future__ import annotations

import threading
import time

import pytest

from legato import Client, LegatoError, StoreError, Workflow
from legato.store.base import ClaimRequest

from .helpers import ALL_TASKS, claim, failed, ok, report
from .tasks import echo, noop


def chain() -> Workflow:
    wf = Workflow("woken")
    a = wf.step("a", echo, x=1)
    wf.step("b", echo, x=a.output)
    return wf


class Waiter:
    """Waits for work in its own thread, as a worker's listener does."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ready = threading.Event()
        self.go = threading.Event()
        self.woke: bool | None = None
        self.elapsed = 0.0
        self.timeout = 5.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        store = self.client.store
        while store.wait_for_work(0.01):  # connect, and forget anything queued earlier
            pass
        self.ready.set()
        self.go.wait(10)
        started = time.monotonic()
        self.woke = store.wait_for_work(self.timeout)
        self.elapsed = time.monotonic() - started

    def result(self, timeout: float) -> tuple[bool | None, float]:
        self.timeout = timeout
        self.go.set()
        self.thread.join(timeout + 10)
        return self.woke, self.elapsed


def test_new_work_wakes_a_waiting_worker(db_url: str) -> None:
    with Client(db_url) as waiting, Client(db_url) as starting:
        waiter = Waiter(waiting)
        waiter.go.set()
        starting.start(chain())  # whether it already waits or not, the wake-up arrives
        waiter.thread.join(10)
        assert waiter.woke is True
        assert waiter.elapsed < 4


def test_waiting_without_work_times_out(db_url: str) -> None:
    with Client(db_url) as waiting:
        woke, elapsed = Waiter(waiting).result(0.3)
    assert woke is False
    assert elapsed >= 0.25


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
        report(working, [failed(a)])
        woke, elapsed = waiter.result(5)
        assert woke is True and elapsed < 4


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
