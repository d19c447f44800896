"""Tasks the storage suite runs; names start with ``store_suite.`` to stay unique."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pydantic

from legato import Client, Context, TaskRegistry, task

_calls: dict[str, int] = {}
_calls_lock = threading.Lock()


def calls(key: str) -> int:
    with _calls_lock:
        return _calls.get(key, 0)


@task(name="store_suite.echo")
def echo(x: Any = None) -> Any:
    return x


@task(name="store_suite.add")
def add(a: int, b: int) -> int:
    return a + b


@task(name="store_suite.fragile", max_lost_attempts=1)
def fragile() -> str:
    return "survived"


@task(name="store_suite.noop")
def noop() -> None:
    return None


@task(name="store_suite.other_queue", queue="other")
def other_queue() -> str:
    return "other"


@task(name="store_suite.urgent", priority=7)
def urgent() -> str:
    return "urgent"


@task(name="store_suite.fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@task(name="store_suite.fail_retried", retries=2, retry_delay=30, jitter=False, backoff="fixed")
def fail_retried(key: str) -> None:
    with _calls_lock:
        _calls[key] = _calls.get(key, 0) + 1
    raise ConnectionError(f"attempt {_calls[key]} failed")


@task(name="store_suite.flaky", retries=3, retry_delay=0)
def flaky(key: str, fails: int) -> str:
    """Fails ``fails`` times for ``key``, then succeeds."""
    with _calls_lock:
        _calls[key] = _calls.get(key, 0) + 1
        n = _calls[key]
    if n <= fails:
        raise ConnectionError(f"attempt {n} failed")
    return f"ok after {n}"


@task(name="store_suite.only_value_errors", retries=3, retry_delay=0, retry_on=[ValueError])
def only_value_errors(kind: str) -> None:
    if kind == "value":
        raise ValueError("retried")
    raise KeyError("not retried")


@task(name="store_suite.retried_once", retries=1, retry_delay=0)
def retried_once() -> str:
    return "done"


@task(name="store_suite.append_to")
def append_to(rows: list[Any]) -> int:
    rows.append("mutated")
    return len(rows)


@task(name="store_suite.bad_output")
def bad_output(kind: str) -> Any:
    if kind == "set":
        return {"x": {1, 2}}
    if kind == "object":
        return {"rows": [1, object()]}
    if kind == "nan":
        return [1.0, float("nan")]
    if kind == "nul":
        return {"text": "a\x00b"}
    if kind == "nul_key":
        return {"k\x00": 1}
    if kind == "surrogate":
        return ["fine", "half \ud83d"]
    if kind == "int_key":
        return {1: "a"}
    if kind == "big":
        return "x" * 1000
    raise AssertionError(kind)


class Point(pydantic.BaseModel):
    x: int
    tags: set[str]


@dataclasses.dataclass
class Box:
    name: str
    points: list[Point]
    size: tuple[int, int] = (1, 2)


@task(name="store_suite.structured")
def structured(kind: str) -> Any:
    if kind == "model":
        return Point(x=1, tags={"a"})
    return Box("b", [Point(x=2, tags=set())])


@task(name="store_suite.double")
def double(x: int) -> int:
    return x * 2


@task(name="store_suite.async_double")
async def async_double(x: int) -> int:
    return x * 2


@task(name="store_suite.total")
def total(rows: list[int]) -> int:
    return sum(rows)


@task(name="store_suite.exits")
def exits(code: int) -> None:
    raise SystemExit(code)


_started: dict[str, threading.Event] = {}


def _started_event(key: str) -> threading.Event:
    with _calls_lock:
        return _started.setdefault(key, threading.Event())


@task(name="store_suite.fail_when_sibling_runs")
def fail_when_sibling_runs(key: str) -> None:
    """Fails as soon as its sibling (``outlive_the_run``) is running."""
    if not _started_event(key).wait(30):
        raise AssertionError("the sibling never started")
    raise ValueError("failed while a sibling ran")


@task(name="store_suite.outlive_the_run")
def outlive_the_run(key: str, url: str, run_id: str) -> str:
    """Starts, lets its sibling fail the run, and returns only once the run has failed."""
    _started_event(key).set()
    with Client(url) as client:
        run = client.wait(run_id, timeout=30, poll_interval=0.005)
    if run.status != "failed":
        raise AssertionError(f"the run ended {run.status.value}, not failed")
    return "finished after the run failed"


class Gates:
    """Calls of ``gated`` that wait until the test opens their gate, call by call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._gates: dict[tuple[str, int], threading.Event] = {}
        self._entered: dict[tuple[str, int], threading.Event] = {}

    def _event(self, table: dict[tuple[str, int], threading.Event], key: str, n: int) -> Any:
        with self._lock:
            return table.setdefault((key, n), threading.Event())

    def enter(self, key: str) -> int:
        with self._lock:
            n = self._calls[key] = self._calls.get(key, 0) + 1
        self._event(self._entered, key, n).set()
        if not self._event(self._gates, key, n).wait(30):
            raise AssertionError(f"gate {key}#{n} was never opened")
        return n

    def entered(self, key: str, n: int, timeout: float = 10) -> bool:
        return bool(self._event(self._entered, key, n).wait(timeout))

    def open(self, key: str, n: int) -> None:
        self._event(self._gates, key, n).set()


gates = Gates()


@task(name="store_suite.gated")
def gated(key: str) -> str:
    """Returns ``call <n>`` once the test opens the gate of its n-th call."""
    return f"call {gates.enter(key)}"


@task(name="store_suite.huge_number")
def huge_number() -> int:
    return 10**5000


@task(name="store_suite.surrogate_error")
def surrogate_error() -> None:
    raise ValueError("bad \udcff byte and a \x00 NUL")


# -- work that takes a while, run by a worker that says who it is ---------------------

#: (worker, started, ended) of each call of ``takes_a_while``, by key
_spans: dict[str, list[tuple[str, float, float]]] = {}


def spans(key: str) -> list[tuple[str, float, float]]:
    """Each call of ``takes_a_while`` for ``key``: the worker that ran it, its start and end."""
    with _calls_lock:
        return list(_spans.get(key, []))


def _take_a_while(key: str, seconds: float, worker: str) -> str:
    with _calls_lock:
        _calls[key] = _calls.get(key, 0) + 1
    started = time.monotonic()
    time.sleep(seconds)  # the work itself, not a wait for anything
    with _calls_lock:
        _spans.setdefault(key, []).append((worker, started, time.monotonic()))
    return worker


@task(name="store_suite.takes_a_while")
def takes_a_while(key: str, seconds: float) -> str:
    """Works for ``seconds``; returns who ran it (here: a worker on the default registry)."""
    return _take_a_while(key, seconds, "default registry")


def registry_for(worker_id: str) -> TaskRegistry:
    """A registry whose ``store_suite.takes_a_while`` records ``worker_id`` as its runner.

    A worker given this registry serves that one task, and each call it runs
    returns (and records) ``worker_id``: what the task saw, to hold against
    the worker the database recorded for the step.
    """
    registry = TaskRegistry()

    def takes_a_while_here(key: str, seconds: float) -> str:
        return _take_a_while(key, seconds, worker_id)

    task(name="store_suite.takes_a_while", registry=registry)(takes_a_while_here)
    return registry


@task(name="store_suite.fails_first_call", retries=1, retry_delay=0)
def fails_first_call(key: str) -> str:
    """The first call for ``key`` always fails; the second (its one retry) succeeds."""
    with _calls_lock:
        n = _calls[key] = _calls.get(key, 0) + 1
    if n == 1:
        raise ConnectionError("the first call fails")
    return f"succeeded on call {n}"


@task(name="store_suite.beating", heartbeat_timeout="10s", retries=1, retry_delay=0)
def beating(ctx: Context) -> str:
    ctx.heartbeat()
    return "alive"
