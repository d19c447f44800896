"""Workers announce what they serve, so a run can say when no live worker serves its steps."""

from __future__ import annotations

import threading

from legato import Client, Worker, Workflow
from legato.store.base import WorkerInfo

from .helpers import ALL_TASKS
from .tasks import echo, other_queue


def info(worker_id: str, **changes: object) -> WorkerInfo:
    fields: dict[str, object] = {
        "id": worker_id,
        "host": "here",
        "pid": 1,
        "queues": ("default",),
        "tasks": ALL_TASKS,
        "concurrency": 4,
    }
    fields.update(changes)
    return WorkerInfo(**fields)  # type: ignore[arg-type]


def two_queues() -> Workflow:
    wf = Workflow("two_queues")
    wf.step("here", echo, x=1)
    wf.step("there", other_queue)
    return wf


def test_registered_workers_are_live_until_they_expire_or_leave(client: Client) -> None:
    store = client.store
    store.register_worker(info("w1"), lease=10)
    store.register_worker(info("w2", queues=None, root_run_id=None), lease=30)
    assert [w.id for w in store.live_workers()] == ["w1", "w2"]
    [w1] = [w for w in store.live_workers() if w.id == "w1"]
    assert (w1.host, w1.pid, w1.queues, w1.concurrency) == ("here", 1, ("default",), 4)
    assert w1.started_at is not None and w1.expires_at is not None
    store.clock.advance(11)
    assert [w.id for w in store.live_workers()] == ["w2"]
    store.extend_leases("w2", [], 30)  # a heartbeat renews the registration too
    store.clock.advance(25)
    assert [w.id for w in store.live_workers()] == ["w2"]
    store.unregister_worker("w2")
    assert store.live_workers() == []


def test_queued_steps_no_live_worker_serves_are_named(client: Client) -> None:
    run_id = client.start(two_queues())
    run = client.get(run_id)
    assert [s.step_id for s in client.unserved_steps(run)] == ["here", "there"]
    client.store.register_worker(info("w1"), lease=30)
    assert [s.step_id for s in client.unserved_steps(run)] == ["there"]
    other_tree = info("w2", queues=None, root_run_id="01a20000-0000-7000-8000-000000000000")
    client.store.register_worker(other_tree, lease=30)
    assert [s.step_id for s in client.unserved_steps(run)] == ["there"]  # not its run
    client.store.register_worker(info("w3", queues=None, root_run_id=run_id), lease=30)
    assert client.unserved_steps(run) == []
    message = client.still_running_message(run_id, 1.0)
    assert message == f"run {run_id} is still pending after 1.0s (0/2 steps done)"


def test_a_running_worker_is_registered_and_leaves_when_it_stops(client: Client) -> None:
    worker = Worker(client, worker_id="announced", lease=3, poll_interval=0.05)
    registered = threading.Event()

    def seen(_tick: object) -> bool:
        if any(w.id == "announced" for w in client.store.live_workers()):
            registered.set()
        return registered.is_set()

    worker.run(until=seen)
    assert registered.is_set()
    assert not [w for w in client.store.live_workers() if w.id == "announced"]
    worker.close()


def test_live_workers_count_the_attempts_each_is_running(client: Client) -> None:
    from legato.store.base import ClaimRequest

    store = client.store
    store.register_worker(info("busy"), lease=30)
    store.register_worker(info("idle"), lease=30)
    client.start(two_queues())
    request = ClaimRequest(
        worker_id="busy", queues=("default",), tasks=ALL_TASKS, limit=5, lease=30
    )
    assert len(store.claim_steps(request)) == 1
    running = {w.id: w.running for w in store.live_workers()}
    assert running == {"busy": 1, "idle": 0}
