"""Races between the workers finishing one map's items, each played out deterministically.

As in ``test_races.py``: one transaction is held at a named point (its locks
taken) while another, on another client with connections of its own, runs
against it; then the first is released and the outcome checked. Besides the
store's checkpoints (``runs_locked``, ``before_commit``), a transaction can be
held right after one of its statements ran (``after decrement_counter``,
``after insert_events``), so that two count-downs can be interleaved inside
the scope's counters.

The rules under test (the lock protocol in the header of
``legato/store/unit.py``): finishing an item never writes or locks its run's
row; a large map's items count down on sharded counters, so workers finishing
items in different shards never wait for one another; whichever transaction
brings the last counter to zero finishes the map, exactly once, however the
last two finish; a result reported again is not counted again.

On PostgreSQL each case says whether the second transaction must wait (it is
seen blocked on a lock) or must not (it commits while the first is held). On
SQLite writers take turns: the second always queues for the write lock, and
goes second.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

import legato
from legato import Client, RunStatus, StepStatus, Workflow
from legato.engine.planner import shard_of, shards_for
from legato.store.base import ClaimedStep, StepResult
from legato.store.postgres.store import _PgTx
from legato.store.sql import SQLStore
from legato.store.sqlite.store import _SQLiteTx

from .helpers import by_step, claim, failed, ok, report, sql
from .tasks import echo

#: application_name prefix of this module's clients (PostgreSQL)
APP = "legato_map_race_"
#: seconds a transaction that must not wait is given to get where it is going
PROMPTLY = 10.0


def _smallest_sharded(shards: int) -> int:
    for size in range(1, 100_000):
        if shards_for(size) >= shards:
            return size
    raise AssertionError(f"no map size gets {shards} counter shards: shards_for changed")


#: the smallest map whose items count down on at least four counter rows
SHARDED = _smallest_sharded(4)


# -- holding transactions ------------------------------------------------------------------


Hook = Callable[[], None]


class Held:
    """``operation`` in its own thread, held at a point of its transaction until released."""

    def __init__(
        self, install: Callable[[Hook], None], point: str, operation: Callable[[], Any]
    ) -> None:
        self.point = point
        self.reached = threading.Event()
        self._go = threading.Event()
        self._finished = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

        def hold() -> None:
            if threading.current_thread() is self._thread and not self.reached.is_set():
                self.reached.set()
                if not self._go.wait(60):
                    raise AssertionError(f"the transaction held at {point} was never released")

        install(hold)
        self._thread = threading.Thread(target=self._run, args=(operation,), daemon=True)
        self._thread.start()

    def _run(self, operation: Callable[[], Any]) -> None:
        try:
            self.result = operation()
        except BaseException as exc:
            self.error = exc
        finally:
            self._finished.set()

    def wait_reached(self, within: float) -> None:
        deadline = time.monotonic() + within
        while not self.reached.wait(0.01):
            if self._finished.is_set():
                raise AssertionError(
                    f"the transaction finished without reaching {self.point}"
                ) from self.error
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the transaction did not reach {self.point} within {within}s: it waited"
                )

    def release(self) -> Any:
        self._go.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), f"the transaction held at {self.point} never ended"
        if self.error is not None:
            raise self.error
        return self.result

    def abandon(self) -> None:
        self._go.set()
        self._thread.join(30)


class Other:
    """The other transaction, on its own client, in its own thread (``Second`` elsewhere)."""

    def __init__(self, client: Client, name: str, operation: Callable[[], Any]) -> None:
        self.name = name
        self.queued_for_write = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

        def begin() -> None:
            if threading.current_thread() is self._thread:
                self.queued_for_write.set()

        checkpoints(client)["begin"] = begin
        self._thread = threading.Thread(target=self._run, args=(operation,), daemon=True)
        self._thread.start()

    def _run(self, operation: Callable[[], Any]) -> None:
        try:
            self.result = operation()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def wait(self) -> Any:
        assert self.done.wait(30), "the second transaction never finished"
        if self.error is not None:
            raise self.error
        return self.result

    def finishes_alone(self) -> Any:
        """It commits while the first is still held: it waited for nothing of it."""
        assert self.done.wait(PROMPTLY), "the second transaction waited for the held one"
        return self.wait()

    def assert_blocked(self, url: str) -> None:
        """It waits for the held transaction: on a row lock, or SQLite's write lock."""
        if url.startswith("sqlite"):
            assert self.queued_for_write.wait(10)
            probe = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    probe.execute("BEGIN IMMEDIATE")
            finally:
                probe.close()
            assert not self.done.is_set()
            return
        deadline = time.monotonic() + 10
        with psycopg.connect(url, autocommit=True) as admin:
            while time.monotonic() < deadline:
                row = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (APP + self.name,),
                ).fetchone()
                if row and row[0]:
                    assert not self.done.is_set()
                    return
                if self.done.is_set():
                    self.wait()  # its error, if it failed
                    raise AssertionError("the second transaction did not wait")
                time.sleep(0.005)
        raise AssertionError("the second transaction never waited on a lock")


def checkpoints(client: Client) -> dict[str, Hook]:
    store = client.store
    assert isinstance(store, SQLStore)
    return store.checkpoints


class Race:
    """Clients on one database and the transactions held on them; all undone at teardown."""

    def __init__(self, url: str, statements: dict[str, list[Hook]]) -> None:
        self.url = url
        self.postgres = not url.startswith("sqlite")
        self._statements = statements
        self._clients: list[Client] = []
        self._held: list[Held] = []

    def client(self, name: str) -> Client:
        url = f"{self.url}?application_name={APP}{name}" if self.postgres else self.url
        client = Client(url)
        self._clients.append(client)
        return client

    def hold(
        self, client: Client, point: str, operation: Callable[[], Any], *, within: float = 30
    ) -> Held:
        """Run ``operation`` on ``client`` and hold it at ``point`` (reached ``within``)."""
        if point.startswith("after "):
            hooks = self._statements.setdefault(point.removeprefix("after "), [])
            held = Held(hooks.append, point, operation)
        else:
            held = Held(lambda hook: checkpoints(client).__setitem__(point, hook), point, operation)
        self._held.append(held)
        held.wait_reached(within)
        return held

    def other(self, client: Client, name: str, operation: Callable[[], Any]) -> Other:
        return Other(client, name, operation)

    def close(self) -> None:
        for held in self._held:
            held.abandon()
        for client in self._clients:
            client.close()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Hook]]:
    """Hooks run right after a named statement, in whichever transaction runs it."""
    hooks: dict[str, list[Hook]] = {}

    def ran(query: str) -> None:
        for hook in list(hooks.get(query, ())):
            hook()

    for cls in (_PgTx, _SQLiteTx):
        for method in ("one", "all", "run", "many", "insert_rows"):
            monkeypatch.setattr(cls, method, _then(getattr(cls, method), ran))
    return hooks


def _then(original: Callable[..., Any], ran: Callable[[str], None]) -> Callable[..., Any]:
    def statement(self: Any, query: str, /, *args: Any, **params: Any) -> Any:
        result = original(self, query, *args, **params)
        ran(query)
        return result

    return statement


@pytest.fixture
def race(db_url: str, statements: dict[str, list[Hook]]) -> Iterator[Race]:
    race = Race(db_url, statements)
    try:
        yield race
    finally:
        race.close()


@pytest.fixture
def pg_race(pg_url: str, statements: dict[str, list[Hook]]) -> Iterator[Race]:
    race = Race(pg_url, statements)
    try:
        yield race
    finally:
        race.close()


# -- the workflow and its items -------------------------------------------------------------


def mapped(*, after: bool = True, **options: Any) -> Workflow:
    """``m`` maps echo over ``xs``; ``after`` reads the map's output; both are outputs."""
    wf = Workflow("map_race")
    m = wf.map("m", echo, over=wf.param("xs"), x=legato.item, **options)
    if after:
        then = wf.step("after", echo, x=m.output)
        wf.outputs(result=m.output, after=then.output)
    else:
        wf.outputs(result=m.output)
    return wf


def start(client: Client, size: int, **options: Any) -> tuple[str, dict[str, ClaimedStep]]:
    """A run of :func:`mapped` over ``range(size)``, and its items claimed."""
    run_id = client.start(mapped(**options), {"xs": list(range(size))})
    items = by_step(claim(client, "w0", limit=max(100, size)))
    for key, step in items.items():
        assert step.kwargs == {"x": index(key)}
    return run_id, items


def index(key: str) -> int:
    assert key.startswith("m[") and key.endswith("]"), key
    return int(key[2:-1])


def result(step: ClaimedStep) -> StepResult:
    return ok(step, step.kwargs["x"] * 10)


def failure(step: ClaimedStep) -> StepResult:
    return failed(step, f"item {step.step_id} failed", retryable=False)


def last_two(keys: list[str]) -> tuple[str, str]:
    """Two items to finish last: in different counter shards where the map has several."""
    keys = sorted(keys, key=index)
    shards = shards_for(len(keys))
    if shards == 1:
        return keys[-2], keys[-1]
    first = keys[0]
    second = next(k for k in keys if shard_of(k, shards) != shard_of(first, shards))
    return first, second


def events(client: Client, run_id: str, type_: str, step: str | None = None) -> int:
    return sum(
        1 for e in client.history(run_id) if e.type == type_ and (step is None or e.step_id == step)
    )


def finisher(client: Client, run_id: str) -> str:
    """The item whose transaction finished the map: its events come just before the map's."""
    history = client.history(run_id)
    [at] = [i for i, e in enumerate(history) if e.type == "step.completed" and e.step_id == "m"]
    return next(
        e.step_id or "" for e in reversed(history[:at]) if (e.step_id or "").startswith("m[")
    )


def remaining(client: Client, run_id: str, scope: str = "m") -> int:
    [(total,)] = sql(
        client.store,
        "SELECT COALESCE(SUM(remaining), 0) FROM scope_counters "
        "WHERE run_id = ? AND scope = ? AND shard >= 0",
        run_id,
        scope,
    )
    return int(total)


def statuses(client: Client, run_id: str, *keys: str) -> dict[str, str]:
    steps = client.get(run_id).steps
    return {k: steps[k].status.value for k in keys}


def finish_after(client: Client, run_id: str, expected: list[Any]) -> None:
    """``after`` was queued once, with the map's whole output; run it; the run completes."""
    assert events(client, run_id, "step.queued", "after") == 1
    [after] = claim(client, "w9")
    assert (after.step_id, after.kwargs) == ("after", {"x": expected})
    assert claim(client, "w9") == []
    assert report(client, [ok(after, after.kwargs["x"])]).finished_runs == {
        run_id: RunStatus.COMPLETED
    }
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": expected, "after": expected}
    assert events(client, run_id, "run.completed") == 1


def conflict_retries(*clients: Client) -> int:
    return sum(getattr(c.store, "conflict_retries", 0) for c in clients)


# -- PostgreSQL: probes of the run's row ------------------------------------------------------


def run_row_version(url: str, run_id: str) -> str:
    """The run row's ``xmin``: it changes whenever a transaction writes the row."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT xmin::text FROM runs WHERE id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row[0])


def assert_run_row_not_held(url: str, run_id: str) -> None:
    """No open transaction holds the run's row to change it (``NO KEY UPDATE`` or stronger).

    A foreign key's ``KEY SHARE`` (an event or step row inserted) is allowed:
    it never blocks the run's own lock, as the lock protocol says.
    """
    with psycopg.connect(url) as probe:
        try:
            probe.execute("SELECT id FROM runs WHERE id = %s FOR NO KEY UPDATE NOWAIT", (run_id,))
        except pg_errors.LockNotAvailable:
            raise AssertionError("a transaction finishing an item holds its run's row") from None
        finally:
            probe.rollback()


def waiting_on_locks(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND wait_event_type = 'Lock'",
            (APP + "%",),
        ).fetchall()
    return [str(r[0]) for r in rows]


# -- 1. workers finishing a map's items do not queue on one row ---------------------------------


@pytest.mark.parametrize("point", ["before_commit", "after insert_events"])
def test_four_workers_finish_items_of_one_map_without_waiting_for_one_another(
    pg_race: Race, pg_url: str, point: str
) -> None:
    """Three completions held open, each with all it writes done; the fourth commits.

    The items are in four different counter shards, none the last of its
    shard, so nothing is shared but the run (never locked) and the map's row
    (never touched).
    """
    size = SHARDED
    shards = shards_for(size)
    owner = pg_race.client("owner")
    run_id, items = start(owner, size)
    assert len(items) == size
    per_shard = Counter(shard_of(k, shards) for k in items)
    picked: dict[int, str] = {}
    for key in sorted(items, key=index):
        shard = shard_of(key, shards)
        if per_shard[shard] > 1 and shard not in picked:
            picked[shard] = key
    keys = list(picked.values())[:4]
    assert len(keys) == 4, f"a map of {size} items has fewer than four shards of two items"
    before = run_row_version(pg_url, run_id)

    workers = [pg_race.client(f"w{n}") for n in range(4)]
    held = []
    for n, (worker, key) in enumerate(zip(workers[:3], keys[:3], strict=True)):
        held.append(
            pg_race.hold(
                worker,
                point,
                functools.partial(report, worker, [result(items[key])]),
                # reached with the ones before still open: it waited for none of them
                within=PROMPTLY,
            )
        )
        assert waiting_on_locks(pg_url) == [], f"worker {n} or one before it waits on a lock"
        assert_run_row_not_held(pg_url, run_id)
    fourth = pg_race.other(workers[3], "w3", lambda: report(workers[3], [result(items[keys[3]])]))
    assert fourth.finishes_alone().accepted == 1
    # Still held, the three hold nothing of the run; the fourth wrote nothing of it.
    assert_run_row_not_held(pg_url, run_id)
    assert run_row_version(pg_url, run_id) == before
    assert waiting_on_locks(pg_url) == []

    for one in held:
        outcome = one.release()
        assert (outcome.accepted, outcome.stale, outcome.finished_runs) == (1, [], {})
    assert run_row_version(pg_url, run_id) == before  # no item's completion wrote the run
    assert conflict_retries(owner, *workers) == 0
    assert statuses(owner, run_id, "m", *keys) == {
        "m": "running",
        **dict.fromkeys(keys, "completed"),
    }
    assert remaining(owner, run_id) == size - 4
    for key in keys:
        assert events(owner, run_id, "step.completed", key) == 1


# -- 2. the last two items finish the map once ---------------------------------------------------

POINTS = ["runs_locked", "after decrement_counter", "before_commit"]


def _second_waits(race: Race, size: int, point: str) -> bool:
    """Whether the second of the last two count-downs waits for the held first.

    PostgreSQL: one counter row (a small map) is locked by the first's
    decrement; of several, the first, holding the latch once its shard is
    empty, makes the second wait only if it got that far. SQLite: always.
    """
    if not race.postgres:
        return True
    if point == "runs_locked":
        return False  # the first has done nothing yet
    return shards_for(size) == 1 or point == "before_commit"


@pytest.mark.parametrize("held", ["first", "second"])
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("size", [3, SHARDED], ids=["one shard", "sharded"])
def test_the_last_two_items_finish_their_map_exactly_once(
    race: Race, db_url: str, size: int, point: str, held: str
) -> None:
    one, two = race.client("one"), race.client("two")
    run_id, items = start(one, size)
    pair = last_two(list(items))
    rest = [k for k in items if k not in pair]
    assert report(one, [result(items[k]) for k in rest]).accepted == len(rest)
    assert remaining(one, run_id) == 2
    mine, theirs = pair if held == "first" else pair[::-1]

    first = race.hold(one, point, lambda: report(one, [result(items[mine])]))
    second = race.other(two, "two", lambda: report(two, [result(items[theirs])]))
    waits = _second_waits(race, size, point)
    if waits:
        second.assert_blocked(db_url)
    else:
        outcome = second.finishes_alone()
        assert (outcome.accepted, outcome.finished_runs) == (1, {})
        # ...and the map is not finished by it: the first's item is still running
        assert statuses(one, run_id, "m", mine) == {"m": "running", mine: "running"}
    assert first.release().accepted == 1
    assert second.wait().accepted == 1

    expected = [i * 10 for i in range(size)]
    assert finisher(one, run_id) == (theirs if waits else mine)
    assert events(one, run_id, "step.completed", "m") == 1
    mapped_step = one.get(run_id).steps["m"]
    assert (mapped_step.status, mapped_step.output) == (StepStatus.COMPLETED, expected)
    assert remaining(one, run_id) == 0
    finish_after(one, run_id, expected)
    assert conflict_retries(one, two) == 0


@pytest.mark.parametrize("held", ["failure", "completion"])
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("size", [3, SHARDED], ids=["one shard", "sharded"])
def test_a_failed_item_and_a_completed_one_finishing_a_map_that_continues_finish_it_once(
    race: Race, db_url: str, size: int, point: str, held: str
) -> None:
    """With ``continue_on_error``, a failed item counts down as a completed one does."""
    one, two = race.client("one"), race.client("two")
    run_id, items = start(one, size, continue_on_error=True)
    bad, good = last_two(list(items))
    rest = [k for k in items if k not in (bad, good)]
    assert report(one, [result(items[k]) for k in rest]).accepted == len(rest)
    results = {bad: failure(items[bad]), good: result(items[good])}
    mine, theirs = (bad, good) if held == "failure" else (good, bad)

    first = race.hold(one, point, lambda: report(one, [results[mine]]))
    second = race.other(two, "two", lambda: report(two, [results[theirs]]))
    waits = _second_waits(race, size, point)
    if waits:
        second.assert_blocked(db_url)
    else:
        assert second.finishes_alone().accepted == 1
    assert first.release().accepted == 1
    assert second.wait().accepted == 1

    expected = [None if f"m[{i}]" == bad else i * 10 for i in range(size)]
    assert finisher(one, run_id) == (theirs if waits else mine)
    assert events(one, run_id, "step.completed", "m") == 1
    assert events(one, run_id, "step.failed", "m") == 0
    assert statuses(one, run_id, "m", bad, good) == {
        "m": "completed",
        bad: "failed",
        good: "completed",
    }
    finish_after(one, run_id, expected)
    assert conflict_retries(one, two) == 0


# -- 3. a result reported twice counts once -----------------------------------------------------


@pytest.mark.parametrize("size", [3, SHARDED], ids=["one shard", "sharded"])
def test_a_replayed_result_does_not_count_its_item_twice(race: Race, size: int) -> None:
    client = race.client("one")
    run_id, items = start(client, size)
    keys = sorted(items, key=index)
    replayed = result(items[keys[0]])
    assert report(client, [replayed]).accepted == 1
    again = report(client, [replayed])  # the same attempt's result, sent again
    assert (again.accepted, again.stale) == (0, [replayed])
    twice = result(items[keys[1]])
    both = report(client, [twice, twice])  # twice in one batch
    assert (both.accepted, both.stale) == (1, [twice])
    for key in keys[2:-1]:
        assert report(client, [result(items[key])]).accepted == 1
    assert report(client, [replayed, twice]).stale == [replayed, twice]

    # Every item but the last has reported, some of them twice: the map still runs.
    assert remaining(client, run_id) == 1
    assert statuses(client, run_id, "m", keys[-1], "after") == {
        "m": "running",
        keys[-1]: "running",
        "after": "waiting",
    }
    assert events(client, run_id, "step.completed", "m") == 0
    assert claim(client, "w1") == []

    last = result(items[keys[-1]])
    assert report(client, [last]).accepted == 1
    assert report(client, [last]).stale == [last]  # replayed after the map finished
    expected = [i * 10 for i in range(size)]
    assert events(client, run_id, "step.completed", "m") == 1
    assert remaining(client, run_id) == 0
    finish_after(client, run_id, expected)
    for key in keys:
        assert events(client, run_id, "step.completed", key) == 1


@pytest.mark.parametrize("point", ["runs_locked", "before_commit"])
def test_a_result_replayed_beside_its_first_report_is_counted_once(
    race: Race, db_url: str, point: str
) -> None:
    """Two clients report item 0's one attempt at once (a retried send): one is accepted.

    Held before it wrote anything, the first lets the replay through on
    PostgreSQL, and finds the item completed; held after, it holds the item's
    row, and the replay waits for it and finds the item completed.
    """
    one, two = race.client("one"), race.client("two")
    run_id, items = start(one, 3)
    sent = result(items["m[0]"])
    first = race.hold(one, point, lambda: report(one, [sent]))
    replay = race.other(two, "two", lambda: report(two, [sent]))
    replay_first = race.postgres and point == "runs_locked"
    if replay_first:
        assert replay.finishes_alone().accepted == 1
        assert first.release().stale == [sent]
    else:
        replay.assert_blocked(db_url)
        assert first.release().accepted == 1
        assert replay.wait().stale == [sent]
    assert events(one, run_id, "step.completed", "m[0]") == 1
    assert remaining(one, run_id) == 2

    assert report(one, [result(items["m[1]"])]).accepted == 1
    assert statuses(one, run_id, "m", "m[2]") == {"m": "running", "m[2]": "running"}
    assert report(one, [result(items["m[2]"])]).accepted == 1
    assert events(one, run_id, "step.completed", "m") == 1
    finish_after(one, run_id, [0, 10, 20])
    assert conflict_retries(one, two) == 0


# -- 4. more interleavings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "held"),
    [
        ("runs_locked", "failure"),
        ("before_commit", "failure"),
        ("runs_locked", "completion"),
        ("after decrement_counter", "completion"),  # a failure counts nothing down
        ("before_commit", "completion"),
    ],
)
def test_a_failed_item_beside_the_last_completion_fails_the_map_once_and_never_completes_it(
    race: Race, db_url: str, point: str, held: str
) -> None:
    """Without ``continue_on_error``: an item fails while the last other one completes.

    The failure fails the map (and the run), holding the run's row; the
    completion touches only its item and the counter, which the failure never
    counts down, so on PostgreSQL neither waits for the other, and the map
    never reaches zero: it is failed once, never completed.
    """
    one, two = race.client("one"), race.client("two")
    run_id, items = start(one, 3)
    assert report(one, [result(items["m[0]"])]).accepted == 1
    bad, good = "m[1]", "m[2]"
    results = {bad: failure(items[bad]), good: result(items[good])}
    mine, theirs = (bad, good) if held == "failure" else (good, bad)

    first = race.hold(one, point, lambda: report(one, [results[mine]]))
    second = race.other(two, "two", lambda: report(two, [results[theirs]]))
    if race.postgres:
        assert second.finishes_alone().accepted == 1
    else:
        second.assert_blocked(db_url)
    assert first.release().accepted == 1
    assert second.wait().accepted == 1

    run = one.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.step == bad
    assert statuses(one, run_id, "m", "m[0]", bad, good, "after") == {
        "m": "failed",
        "m[0]": "completed",
        bad: "failed",
        good: "completed",  # it was running, so the failure let it finish
        "after": "cancelled",
    }
    assert events(one, run_id, "step.failed", "m") == 1
    assert events(one, run_id, "step.completed", "m") == 0
    assert events(one, run_id, "run.failed") == 1
    assert events(one, run_id, "run.completed") == 0
    assert remaining(one, run_id) == 1  # the failed item never counted down
    assert claim(one, "w9") == []
    assert conflict_retries(one, two) == 0


def test_the_last_completion_beside_a_transaction_holding_the_run_starts_over_once(
    race: Race, db_url: str
) -> None:
    """The map is the run's last step: its last item's completion finishes the run.

    That is the one completion that needs the run's row, taken without waiting
    when it finds it needs it. Another transaction holds it: a late failure of
    an item that completed already (a failure locks its run first, before it
    finds its attempt is over). On PostgreSQL the completion starts over, the
    run's row taken first, waits for the other, and finishes the map and the
    run once; on SQLite it queues and goes second.
    """
    one, two = race.client("one"), race.client("two")
    run_id, items = start(one, 3, after=False)
    assert report(one, [result(items[k]) for k in ("m[0]", "m[1]")]).accepted == 2
    late = failure(items["m[0]"])
    holding = race.hold(one, "before_commit", lambda: report(one, [late]))
    last = race.other(two, "two", lambda: report(two, [result(items["m[2]"])]))
    last.assert_blocked(db_url)
    assert holding.release().stale == [late]
    outcome = last.wait()
    assert (outcome.accepted, outcome.finished_runs) == (1, {run_id: RunStatus.COMPLETED})

    run = one.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [0, 10, 20]}
    assert events(one, run_id, "step.completed", "m[2]") == 1
    assert events(one, run_id, "step.completed", "m") == 1
    assert events(one, run_id, "run.completed") == 1
    assert conflict_retries(two) == (1 if race.postgres else 0)
    assert conflict_retries(one) == 0


@pytest.mark.parametrize("point", ["runs_locked", "before_commit"])
def test_two_items_finishing_at_once_under_max_parallel_each_start_a_different_waiting_item(
    race: Race, db_url: str, point: str
) -> None:
    """Two slots free at once: each completion queues one waiting item, never the same one."""
    one, two = race.client("one"), race.client("two")
    run_id, items = start(one, 4, max_parallel=2)
    assert sorted(items) == ["m[0]", "m[1]"]
    first = race.hold(one, point, lambda: report(one, [result(items["m[0]"])]))
    second = race.other(two, "two", lambda: report(two, [result(items["m[1]"])]))
    if race.postgres and point == "runs_locked":
        assert second.finishes_alone().accepted == 1
    else:
        # PostgreSQL: it skips the waiting item the first holds, starts the next,
        # then waits for the first on the map's one counter row.
        second.assert_blocked(db_url)
    assert first.release().accepted == 1
    assert second.wait().accepted == 1

    for key in ("m[2]", "m[3]"):
        assert events(one, run_id, "step.queued", key) == 1
    rest = by_step(claim(one, "w1"))
    assert sorted(rest) == ["m[2]", "m[3]"]
    assert claim(one, "w1") == []
    assert report(one, [result(s) for s in rest.values()]).accepted == 2
    assert events(one, run_id, "step.completed", "m") == 1
    finish_after(one, run_id, [0, 10, 20, 30])
    assert conflict_retries(one, two) == 0


# -- 6. batches over the same shards, in opposite orders, never deadlock ----------------------


def test_two_batches_over_the_same_shards_in_opposite_orders_wait_and_never_deadlock(
    pg_race: Race, pg_url: str
) -> None:
    """Each worker reports two items, one in shard A and one in shard B, listed so that
    the first would count A down first and the second B (their keys sort that way).

    Counting down as each result is applied took the shards' rows in those
    orders: each transaction then waited for the other's, PostgreSQL found the
    deadlock after a second and one batch started over. Counts are written when
    the transaction settles, in one (run, scope, shard) order: the second
    worker waits for the held first on A, and neither starts over.
    """
    size = SHARDED
    shards = shards_for(size)
    owner = pg_race.client("owner")
    run_id, items = start(owner, size)
    by_shard: dict[int, list[str]] = {}
    for key in sorted(items, key=index):
        by_shard.setdefault(shard_of(key, shards), []).append(key)
    # Two shards with two items each, the first item of one sorting before the other's.
    pair = [s for s, keys in sorted(by_shard.items()) if len(keys) >= 3][:2]
    assert len(pair) == 2, "the map has no two shards of three items"
    a, b = pair
    first_batch = sorted([by_shard[a][0], by_shard[b][0]])
    second_batch = sorted([by_shard[a][1], by_shard[b][1]])
    # Results are applied in key order: make the batches meet the shards in opposite orders.
    if (shard_of(first_batch[0], shards) == a) == (shard_of(second_batch[0], shards) == a):
        second_batch = sorted([by_shard[a][1], by_shard[b][2]])
    orders = [[shard_of(k, shards) for k in batch] for batch in (first_batch, second_batch)]
    assert orders[0] != orders[1], "the batches meet the shards in the same order"

    one, two = pg_race.client("w1"), pg_race.client("w2")
    held = pg_race.hold(
        one,
        "after decrement_counter",
        lambda: report(one, [result(items[k]) for k in first_batch]),
    )
    other = pg_race.other(two, "w2", lambda: report(two, [result(items[k]) for k in second_batch]))
    other.assert_blocked(pg_url)  # on the first shard the held one counted down
    assert held.release().accepted == 2
    assert other.wait().accepted == 2
    assert conflict_retries(owner, one, two) == 0
    assert remaining(owner, run_id) == size - 4
