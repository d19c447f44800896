"""Property: any DAG runs each step once, after all its dependencies, with outputs flowing.

Hypothesis draws DAGs of 1-25 steps whose edges go from earlier to later
steps, each edge written as a data reference, a ``needs`` entry or ``>>``;
steps are sync or async, and a few fail their first attempt. A run goes
through ``legato.run`` with four slots, or through two workers with two slots
each, on two clients of their own, racing for its steps. One edge may be written several ways at
once (a data reference and ``>>``): it is still one dependency. Tasks take numbers from one shared
sequence when they start and finish, so order is checked without clocks.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import legato
from legato import Client, Run, RunStatus, Workflow
from legato.define.builder import StepRef
from legato.embedded import work_until_finished

from .tasks import calls, dag_node, dag_node_async, dag_value, notes

MODES = ("data", "needs", "rshift")
#: how one edge is written: mostly one way, sometimes two or three at once
WAYS = [frozenset(c) for n in (1, 1, 2, 3) for c in itertools.combinations(MODES, n)]


@dataclass(frozen=True)
class Dag:
    #: for each step, its dependencies (earlier steps) and the ways each edge is written
    edges: list[dict[int, frozenset[str]]]
    is_async: list[bool]
    #: steps whose first attempt fails (retried once)
    flaky: frozenset[int]
    #: 1: ``legato.run``; 2: two workers on separate clients
    workers: int

    @property
    def size(self) -> int:
        return len(self.edges)


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    size = draw(st.integers(1, 25))
    edges: list[dict[int, frozenset[str]]] = []
    ways = st.sampled_from(WAYS)
    for i in range(size):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=min(i, 4))) if i else set()
        edges.append({p: draw(ways) for p in sorted(parents)})
    is_async = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    flaky = draw(st.frozensets(st.integers(0, size - 1), max_size=3))
    return Dag(edges, is_async, flaky, draw(st.sampled_from([1, 2])))


def build(dag: Dag) -> Workflow:
    wf = Workflow("random_dag")
    refs: list[StepRef] = []
    for i, edges in enumerate(dag.edges):
        reads = {f"d{j}": refs[j].output["value"] for j, ways in edges.items() if "data" in ways}
        ref = wf.step(
            f"s{i}",
            dag_node_async if dag.is_async[i] else dag_node,
            needs=[refs[j] for j, ways in edges.items() if "needs" in ways],
            run="${{ run.id }}",
            me=f"s{i}",
            fail_first=i in dag.flaky,
            inputs=reads,
        )
        for j, ways in edges.items():
            if "rshift" in ways:
                refs[j] >> ref
        refs.append(ref)
    wf.outputs(last=refs[-1].output)
    return wf


def expected_outputs(dag: Dag) -> dict[str, dict[str, Any]]:
    outputs: dict[str, dict[str, Any]] = {}
    for i, edges in enumerate(dag.edges):
        seen = {f"d{j}": outputs[f"s{j}"]["value"] for j, ways in edges.items() if "data" in ways}
        me = f"s{i}"
        outputs[me] = {"step": me, "value": dag_value(me, seen), "seen": dict(sorted(seen.items()))}
    return outputs


def run_dag(dag: Dag, url: str) -> Run:
    workflow = build(dag)
    if dag.workers == 1:
        return legato.run(workflow, url=url, concurrency=4, timeout=60)
    clients = [Client(url) for _ in range(dag.workers)]
    failures: list[BaseException] = []

    def work(client: Client) -> None:
        try:
            work_until_finished(client, run_id, concurrency=2, timeout=60)
        except BaseException as exc:
            failures.append(exc)

    try:
        run_id = clients[0].start(workflow)
        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        assert not failures, failures
        assert not any(t.is_alive() for t in threads)
        return clients[0].get(run_id)
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def fresh_url(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A new SQLite file per example; PostgreSQL examples share the test's database."""

    def url() -> str:
        if db_url.startswith("sqlite:"):
            return f"sqlite:///{tmp_path_factory.mktemp('dag') / 'legato.db'}"
        return db_url

    return url


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(dag=dags())
def test_random_dags_run_each_step_once_in_dependency_order(fresh_url: Any, dag: Dag) -> None:
    event(f"steps {dag.size // 5 * 5}+")
    event(f"{dag.workers} worker(s)")
    run = run_dag(dag, fresh_url())
    assert run.status is RunStatus.COMPLETED, run

    expected = expected_outputs(dag)
    assert run.outputs == {"last": expected[f"s{dag.size - 1}"]}
    for i in range(dag.size):
        step = run.steps[f"s{i}"]
        tries = 2 if i in dag.flaky else 1
        assert (step.status, step.attempt, step.output) == ("completed", tries, expected[f"s{i}"])
        assert calls(f"{run.id}/s{i}") == tries

    # Every attempt started after every dependency had finished, and each step
    # completed exactly once (the tasks' own records, in sequence numbers).
    records = notes(run.id)
    completed = {me: (start, end) for me, start, end, outcome in records if outcome == "completed"}
    assert len(completed) == dag.size == len([r for r in records if r[3] == "completed"])
    assert sorted(me for me, *_, outcome in records if outcome == "failed") == sorted(
        f"s{i}" for i in dag.flaky
    )
    for me, started, _, _ in records:
        for j in dag.edges[int(me[1:])]:
            assert started > completed[f"s{j}"][1], (me, f"s{j}")
