"""Flow control: claim order (priority, stage, first queued) and limits across workers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from legato import Client, RunStatus, StepStatus, TaskRegistry, Worker, Workflow, task
from legato.errors import DefinitionError
from legato.store.base import ClaimedStep, ClaimRequest

from .helpers import claim, failed, ok, report, sql
from .test_races import SECOND, Held, Second

registry = TaskRegistry()
_lock = threading.Lock()
#: (key, started, ended) of each call of ``limited``/``per_customer``, in this process
_spans: list[tuple[str, float, float]] = []


def _work(key: str, seconds: float) -> str:
    started = time.monotonic()
    time.sleep(seconds)  # the work itself
    with _lock:
        _spans.append((key, started, time.monotonic()))
    return key


@task(name="flow_suite.step", registry=registry)
def step(x: Any = None) -> Any:
    return x


@task(name="flow_suite.limited", concurrency=2, registry=registry)
def limited(key: str, seconds: float = 0.0) -> str:
    return _work(key, seconds)


@task(name="flow_suite.per_customer", concurrency=1, concurrency_key="customer", registry=registry)
def per_customer(customer: str, key: str = "", seconds: float = 0.0) -> str:
    return _work(f"{customer}:{key}", seconds)


@task(name="flow_suite.rated", rate_limit="2/10s", registry=registry)
def rated(n: int = 0) -> int:
    return n


TASKS = ("flow_suite.step", "flow_suite.limited", "flow_suite.per_customer", "flow_suite.rated")


def take(client: Client, limit: int = 1, worker: str = "w1", **kw: Any) -> list[ClaimedStep]:
    return claim(client, worker, limit=limit, tasks=TASKS, **kw)


def labels(client: Client, steps: list[ClaimedStep], runs: dict[str, str]) -> list[str]:
    return [f"{runs[s.run_id]}.{s.step_id}" for s in steps]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t comes before a start at t)."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = running = 0
    for _, delta in edges:
        running += delta
        most = max(most, running)
    return most


# -- order ------------------------------------------------------------------------------


def chain(name: str = "chain") -> Workflow:
    wf = Workflow(name)
    a = wf.step("a", step, x=1)
    b = wf.step("b", step, x=a.output)
    wf.step("c", step, x=b.output)
    return wf


def test_one_slot_finishes_runs_under_way_before_starting_new_ones(client: Client) -> None:
    runs = {client.start(chain()): f"r{i}" for i in range(3)}
    order = []
    done: list[Any] = []
    while True:
        outcome = report(
            client,
            done,
            ClaimRequest(worker_id="w1", queues=("default",), tasks=TASKS, limit=1, lease=30),
        )
        if not outcome.claimed:
            break
        [got] = outcome.claimed
        order.append(f"{runs[got.run_id]}.{got.step_id}")
        done = [ok(got, 1)]
    # Stage first (a run's later steps before another run's first), then first queued.
    assert order == [f"r{i}.{s}" for i in range(3) for s in "abc"]
    assert all(client.get(r).status is RunStatus.COMPLETED for r in runs)


def test_explicit_priority_beats_stage_and_ties_go_first_queued(client: Client) -> None:
    first = client.start(chain())
    [a] = take(client)
    report(client, [ok(a, 1)])  # first.b is queued now: stage 1
    wf = Workflow("fan")
    for i in range(3):
        wf.step(f"p{i}", step, x=i, priority=1 if i == 1 else None)
    fan = client.start(wf)
    late = client.start(chain())  # its a: stage 0, queued last
    runs = {first: "first", fan: "fan", late: "late"}
    got = []
    while batch := take(client):
        got += labels(client, batch, runs)
    assert got == ["fan.p1", "first.b", "fan.p0", "fan.p2", "late.a"]


def test_a_batch_claim_returns_its_steps_in_claim_order(client: Client) -> None:
    runs = {client.start(chain()): "r0"}
    [a] = take(client)
    report(client, [ok(a, 1)])
    wf = Workflow("fan")
    wf.step("p0", step)
    wf.step("p1", step, priority=4)
    runs[client.start(wf)] = "fan"
    assert labels(client, take(client, limit=10), runs) == ["fan.p1", "r0.b", "fan.p0"]


def test_workers_serving_several_queues_keep_the_order_across_them(client: Client) -> None:
    wf = Workflow("queues")
    wf.step("low_here", step, queue="q1")
    wf.step("high_there", step, queue="q2", priority=3)
    wf.step("elsewhere", step, queue="q3", priority=9)
    wf.step("mid_here", step, queue="q1", priority=2)
    run = client.start(wf)
    names = {run: "r"}
    got = []
    while batch := take(client, queues=("q1", "q2")):
        got += labels(client, batch, names)
    assert got == ["r.high_there", "r.mid_here", "r.low_here"]
    assert client.get(run).steps["elsewhere"].status is StepStatus.QUEUED


def test_a_worker_serving_two_queues_runs_their_steps_in_claim_order(db_url: str) -> None:
    wf = Workflow("served")
    first = wf.step("first", step, x=0, queue="q1")
    wf.step("then_low", step, x=1, queue="q2", needs=[first])
    wf.step("then_high", step, x=2, queue="q1", needs=[first], priority=2)
    wf.step("other", step, x=3, queue="q3", priority=9)
    wf.step("plain", step, x=4, queue="q2")
    with Client(db_url) as client:
        run = client.start(wf)
        worker = Worker(client, queues=["q1", "q2"], concurrency=1, registry=registry)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            worker.tick()
            steps = client.get(run).steps
            if all(s.status is StepStatus.COMPLETED for k, s in steps.items() if k != "other"):
                break
            time.sleep(0.002)  # let the task thread report
        worker.tick()
        started = [e.step_id for e in client.history(run) if e.type == "step.started"]
        # first (stage 0, queued first); once it is done, priority 2, then stage 1 of
        # priority 0 before plain, stage 0 though queued before both.
        assert started == ["first", "then_high", "then_low", "plain"]
        assert client.get(run).steps["other"].status is StepStatus.QUEUED


# -- concurrency ------------------------------------------------------------------------


def many(name: str, n: int, seconds: float = 0.0) -> Workflow:
    wf = Workflow(name)
    for i in range(n):
        wf.step(f"s{i}", limited, key=f"{name}{i}", seconds=seconds, continue_on_error=True)
    return wf


def test_a_claim_takes_no_more_than_the_limit_allows(client: Client) -> None:
    run = client.start(many("cap", 5))
    first = take(client, limit=10)
    assert len(first) == 2
    assert take(client, limit=10, worker="w2") == []
    report(client, [ok(first[0], "x")])  # one slot frees
    [third] = take(client, limit=10, worker="w2")
    report(client, [failed(first[1], retryable=False)])  # a failure frees one too
    [fourth] = take(client, limit=10)
    assert take(client, limit=10) == []
    report(client, [ok(third, "x"), ok(fourth, "x")])
    assert len(take(client, limit=10)) == 1
    steps = client.get(run).steps
    assert sum(s.status is StepStatus.RUNNING for s in steps.values()) == 1
    assert {s.attempt for s in steps.values()} == {1}  # a step passed over spent nothing


def test_steps_turned_back_leave_room_for_others_in_the_same_claim(client: Client) -> None:
    wf = Workflow("mixed")
    for i in range(3):
        wf.step(f"lim{i}", limited, key=f"mixed{i}", priority=5)
    for i in range(3):
        wf.step(f"free{i}", step, x=i)
    run = client.start(wf)
    got = take(client, limit=4)
    assert sorted(s.step_id for s in got) == ["free0", "free1", "lim0", "lim1"]
    assert client.get(run).steps["lim2"].status is StepStatus.QUEUED


def test_a_step_can_set_its_own_limit(client: Client) -> None:
    wf = Workflow("own")
    for i in range(4):
        wf.step(f"s{i}", step, x=i, concurrency=1)
    client.start(wf)
    assert len(take(client, limit=10)) == 1
    wf = Workflow("looser")
    for i in range(4):
        wf.step(f"s{i}", step, x=i, concurrency=3)
    client.start(wf)
    # Both count against flow_suite.step; each step is held to its own figure.
    assert len(take(client, limit=10)) == 2


def test_a_lost_worker_frees_its_slot_once_its_lease_is_swept(client: Client) -> None:
    client.start(many("lost", 3))
    held = take(client, limit=10, lease=5)
    assert len(held) == 2
    assert take(client, limit=10, worker="w2") == []
    client.store.clock.advance(6)  # w1 is gone: its leases lapse
    again = take(client, limit=10, worker="w2", sweep=True)
    assert len(again) == 2
    assert take(client, limit=10, worker="w3") == []


def test_handing_back_and_cancelling_free_slots(client: Client) -> None:
    run = client.start(many("back", 3))
    held = take(client, limit=10)
    outcome = client.store.report_and_claim([], None, release=[held[0].ref], worker_id="w1")
    assert outcome.released == 1
    [again] = take(client, limit=10, worker="w2")
    client.cancel(run)
    report(client, [ok(h, "x") for h in [*held[1:], again]])
    other = client.start(many("after", 2))
    assert len(take(client, limit=10)) == 2
    assert client.get(other).status is RunStatus.RUNNING


def test_concurrency_is_counted_per_key(client: Client) -> None:
    wf = Workflow("customers")
    for i, customer in enumerate(["acme", "acme", "acme", "globex", "globex", "initech"]):
        wf.step(f"s{i}", per_customer, customer=customer, key=str(i))
    client.start(wf)
    first = take(client, limit=10)
    assert sorted(s.kwargs["customer"] for s in first) == ["acme", "globex", "initech"]
    assert take(client, limit=10) == []  # the rest are passed over, their slot known
    report(client, [ok(s, "x") for s in first if s.kwargs["customer"] == "acme"])
    [nxt] = take(client, limit=10)
    assert nxt.kwargs["customer"] == "acme"


def _workers(db_url: str, n: int) -> tuple[list[Client], list[Worker]]:
    clients = [Client(db_url) for _ in range(n)]
    workers = [
        Worker(c, worker_id=f"w{i}", concurrency=3, registry=registry, poll_interval=0.05)
        for i, c in enumerate(clients)
    ]
    return clients, workers


def _run_until(workers: list[Worker], done: threading.Event, timeout: float) -> None:
    threads = [
        threading.Thread(target=w.run, kwargs={"until": lambda _t: done.is_set()}, daemon=True)
        for w in workers
    ]
    for t in threads:
        t.start()
    done.wait(timeout)
    done.set()
    for w in workers:
        w.stop()
    for t in threads:
        t.join(timeout=10)


def _finish(client: Client, runs: list[str], done: threading.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.get(r, with_steps=False).finished for r in runs):
            break
        time.sleep(0.02)
    done.set()


def test_four_workers_never_run_more_than_the_limit(db_url: str) -> None:
    with Client(db_url) as starter:
        tag = uuid.uuid4().hex[:8]
        runs = [starter.start(many(f"m{tag}{r}_", 6, seconds=0.03)) for r in range(2)]
        clients, workers = _workers(db_url, 4)
        done = threading.Event()
        watcher = threading.Thread(target=_finish, args=(starter, runs, done, 30))
        watcher.start()
        try:
            _run_until(workers, done, 35)
        finally:
            watcher.join()
            for c in clients:
                c.close()
        assert all(starter.get(r).status is RunStatus.COMPLETED for r in runs)
        ran = [(a, b) for key, a, b in list(_spans) if key.startswith(f"m{tag}")]
        assert len(ran) == 12
        assert max_overlap(ran) <= 2
        # As the database saw them: from claim to report, never more than 2 at once.
        rows = sql(
            starter.store,
            "SELECT started_at, finished_at FROM step_runs WHERE task = ?",
            "flow_suite.limited",
        )
        held = [(_seconds(a), _seconds(b)) for a, b in rows]
        assert max_overlap(held) <= 2
        assert max_overlap(ran) == 2  # the limit is reached, not just kept


def _seconds(value: Any) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def test_four_workers_keep_each_customer_to_its_limit(db_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    wf = Workflow("per_key")
    for i in range(8):
        customer = f"{tag}{'ab'[i % 2]}"
        wf.step(f"s{i}", per_customer, customer=customer, key=str(i), seconds=0.03)
    with Client(db_url) as starter:
        run = starter.start(wf)
        clients, workers = _workers(db_url, 4)
        done = threading.Event()
        watcher = threading.Thread(target=_finish, args=(starter, [run], done, 30))
        watcher.start()
        try:
            _run_until(workers, done, 35)
        finally:
            watcher.join()
            for c in clients:
                c.close()
        assert starter.get(run).status is RunStatus.COMPLETED
        for customer in "ab":
            ran = [(a, b) for key, a, b in list(_spans) if key.startswith(f"{tag}{customer}:")]
            assert len(ran) == 4
            assert max_overlap(ran) == 1


# -- rate -------------------------------------------------------------------------------


def test_a_rate_limit_spaces_starts_by_its_window(client: Client) -> None:
    wf = Workflow("rated")
    for i in range(5):
        wf.step(f"s{i}", rated, n=i)
    client.start(wf)
    first = take(client, limit=10)
    assert len(first) == 2
    report(client, [ok(s, 1) for s in first])  # finishing frees no start
    outcome = report(
        client,
        [],
        ClaimRequest(worker_id="w1", queues=("default",), tasks=TASKS, limit=10, lease=30),
    )
    assert outcome.claimed == []
    # The claimer learns when the window opens, rather than polling for it.
    assert outcome.next_retry_in is not None and 9 <= outcome.next_retry_in <= 10
    client.store.clock.advance(9.5)
    assert take(client, limit=10) == []
    client.store.clock.advance(0.6)
    assert len(take(client, limit=10)) == 2
    client.store.clock.advance(10)
    assert len(take(client, limit=10)) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "abc"}, "rate_limit: expected '<starts>/<window>'"),
        ({"rate_limit": "0/1s"}, "rate_limit: at least 1 start per window"),
        ({"rate_limit": "5/0s"}, "rate_limit"),
        ({"concurrency": 0}, "concurrency: expected a whole number of at least 1"),
        ({"concurrency": True}, "concurrency: expected a whole number of at least 1"),
        ({"concurrency": 2, "concurrency_key": "nope"}, "'nope' is not a parameter"),
        ({"concurrency_key": "x"}, "keys no limit"),
    ],
)
def test_bad_limits_are_refused_where_they_are_written(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        task(name="flow_suite.bad", registry=TaskRegistry(), **options)(step.fn)
    if "concurrency_key" not in options:
        wf = Workflow("bad")
        with pytest.raises(DefinitionError, match=f"step 's'.*{message}"):
            wf.step("s", step, **options)


# -- races ------------------------------------------------------------------------------


@pytest.fixture
def claimers(db_url: str) -> Iterator[tuple[Client, Client]]:
    """Two clients on one database, each with connections of its own."""
    second_url = db_url if db_url.startswith("sqlite") else f"{db_url}?application_name={SECOND}"
    with Client(db_url) as first, Client(second_url) as second:
        yield first, second


def test_two_claimers_of_one_slot_take_turns(claimers: tuple[Client, Client], db_url: str) -> None:
    """The second claimer counts the attempt the first started: it waits for the slot's
    row while the first holds it (on PostgreSQL; SQLite's writers take turns anyway)."""
    first, second = claimers
    wf = Workflow("one_slot")
    for i in range(3):
        wf.step(f"s{i}", step, x=i, concurrency=1)
    run = first.start(wf)
    held = Held(first, "before_commit", lambda: take(first, limit=1))
    racing = Second(second, lambda: take(second, limit=1, worker="w2"))
    racing.assert_blocked(db_url)
    assert len(held.release()) == 1
    assert racing.wait() == []
    steps = first.get(run).steps
    assert sorted(s.status.value for s in steps.values()) == ["queued", "queued", "running"]
    assert {s.attempt for s in steps.values()} <= {0, 1}


def test_standalone_calls_keep_their_tasks_limits(client: Client) -> None:
    for i in range(3):
        client.enqueue(per_customer, customer="acme", key=str(i))
    client.enqueue(per_customer, customer="globex", key="g")
    got = take(client, limit=10)
    assert sorted(s.kwargs["customer"] for s in got) == ["acme", "globex"]


def test_a_steps_key_must_be_a_parameter_of_its_task(client: Client) -> None:
    wf = Workflow("bad_key")
    wf.step("s", step, x=1, concurrency=1, concurrency_key="customer")
    with pytest.raises(DefinitionError, match="concurrency_key='customer' is not a parameter"):
        client.start(wf)


def test_limits_beyond_what_the_databases_hold_are_refused_where_written() -> None:
    from legato.model.limits import check_concurrency, parse_rate_limit

    with pytest.raises(ValueError, match="at most 2,147,483,647"):
        check_concurrency(10**12)
    with pytest.raises(ValueError, match="at most 2,147,483,647 starts"):
        parse_rate_limit("99999999999999/1s")
    assert check_concurrency(2**31 - 1) == 2**31 - 1


def test_a_sweep_drops_slots_long_unused_and_the_limit_holds_after(client: Client) -> None:
    """A rate window's row goes once its window ended over an hour ago (a slot with
    no row is a fresh window), not before: the table holds the slots in use, not
    every key ever limited."""

    def sweep() -> None:
        report(
            client,
            [],
            ClaimRequest(
                worker_id="sweeper", queues=("other",), tasks=TASKS, limit=1, lease=30, sweep=True
            ),
        )

    def slots() -> int:
        [(n,)] = sql(client.store, "SELECT count(*) FROM flow_windows")
        return int(n)

    wf = Workflow("rated_rows")
    for i in range(6):
        wf.step(f"s{i}", rated, n=i)
    client.start(wf)
    first = take(client, limit=10)
    assert len(first) == 2 and slots() == 1
    report(client, [ok(s, 1) for s in first])
    client.store.clock.advance(3000)  # the window ended, but not an hour ago
    sweep()
    assert slots() == 1
    client.store.clock.advance(620)
    sweep()
    assert slots() == 0
    # The slot comes back on its next use, a fresh window holding the limit.
    assert len(take(client, limit=10)) == 2 and slots() == 1
    assert take(client, limit=10) == []
    client.store.clock.advance(10.1)
    assert len(take(client, limit=10)) == 2
