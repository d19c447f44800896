"""Reading runs: get with steps and attempts, list_runs, history, unknown ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from legato import Client, ParamError, RunNotFoundError, RunStatus, StepStatus, Workflow

from .helpers import claim, failed, ok, report, sql
from .tasks import add, echo, noop


def chain(name: str = "reads") -> Workflow:
    wf = Workflow(name)
    a = wf.step("a", echo, x=wf.param("x"), retry={"max_attempts": 2, "delay": 0})
    wf.step("b", add, a=a.output, b=2)
    wf.outputs(result=wf.param("x"))
    return wf


def test_get_returns_steps_attempts_and_utc_timestamps(client: Client) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    run_id = client.start(chain(), {"x": 1}, correlation_id="corr-1")
    [a1] = claim(client, "w1")
    report(client, [failed(a1, "first")])
    [a2] = claim(client, "w2")
    report(client, [ok(a2, 1)])
    [b] = claim(client, "w3")
    report(client, [ok(b, 3)])
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.correlation_id == "corr-1" and run.parent_run_id is None
    assert run.variables == {}
    assert list(run.steps) == ["a", "b"]
    times = [run.created_at, run.started_at, run.finished_at]
    for step in run.steps.values():
        times += [step.queued_at, step.started_at, step.finished_at]
        for attempt in step.attempts:
            times += [attempt.started_at, attempt.finished_at]
    for when in times:
        assert isinstance(when, datetime)
        assert when.utcoffset() == timedelta(0)
        assert started < when < datetime.now(UTC) + timedelta(seconds=5)
    assert run.created_at <= run.started_at <= run.finished_at  # type: ignore[operator]
    assert run.duration is not None and run.duration >= 0
    a = run.steps["a"]
    assert [(x.number, x.status, x.worker) for x in a.attempts] == [
        (1, "failed", "w1"),
        (2, "completed", "w2"),
    ]
    assert a.attempts[0].error is not None and a.attempts[0].error.message == "first"
    assert a.attempts[1].error is None
    assert all(x.duration is not None and x.duration >= 0 for x in a.attempts)
    assert (a.attempt, a.max_attempts, a.worker, a.output) == (2, 2, "w2", 1)
    b_step = run.steps["b"]
    assert (b_step.inputs, b_step.output, b_step.worker) == ({"a": 1, "b": 2}, 3, "w3")


def test_get_without_steps(client: Client) -> None:
    run_id = client.start(chain(), {"x": 1})
    run = client.get(run_id, with_steps=False)
    assert run.steps == {}
    assert run.steps_total == 2


def test_run_repr(client: Client) -> None:
    run_id = client.start(chain(), {"x": 7})
    assert (
        repr(client.get(run_id))
        == f"Run(id={run_id!r}, workflow='reads@1', status='pending', steps=0/2)"
    )
    report(client, [ok(claim(client)[0], 7)])
    report(client, [ok(claim(client)[0], 9)])
    assert repr(client.get(run_id)) == (
        f"Run(id={run_id!r}, workflow='reads@1', status='completed', steps=2/2, "
        "outputs={'result': 7})"
    )
    failing = client.start(chain(), {"x": 1})
    [a] = claim(client)
    report(client, [failed(a, "bad thing", retryable=False)])
    # Both steps finished: one failed, the one after it cancelled.
    assert repr(client.get(failing)) == (
        f"Run(id={failing!r}, workflow='reads@1', status='failed', steps=2/2, "
        "error=\"step 'a': ValueError: bad thing\")"
    )


def test_list_runs_newest_first_with_filters_and_limit(client: Client) -> None:
    other = Workflow("other")
    other.step("n", noop)
    ids = []
    for i in range(3):
        ids.append(client.start(chain(), {"x": i}))
        client.store.clock.advance(1)  # distinct creation times on both databases
    other_id = client.start(other)
    listed = client.list_runs()
    assert [r.id for r in listed] == [other_id, *reversed(ids)]
    assert all(r.steps == {} for r in listed)
    assert [r.id for r in client.list_runs(limit=2)] == [other_id, ids[2]]
    assert [r.id for r in client.list_runs(workflow="reads")] == list(reversed(ids))
    assert [r.id for r in client.list_runs(workflow="nope")] == []
    # make the oldest run complete, the middle one running
    claimed = claim(client, root=ids[0])
    report(client, [ok(claimed[0], 0)])
    report(client, [ok(claim(client, root=ids[0])[0], 2)])
    claim(client, root=ids[1])
    assert [r.id for r in client.list_runs(status="completed")] == [ids[0]]
    assert [r.id for r in client.list_runs(status=RunStatus.RUNNING)] == [ids[1]]
    assert [r.id for r in client.list_runs(status="pending")] == [other_id, ids[2]]
    assert [r.id for r in client.list_runs(status="pending", workflow="reads")] == [ids[2]]
    assert client.list_runs(status="failed") == []


def test_list_runs_with_an_unknown_status(client: Client) -> None:
    with pytest.raises(ParamError, match="unknown run status 'done'"):
        client.list_runs(status="done")


def test_list_runs_limit_bounds(client: Client) -> None:
    client.start(chain(), {"x": 1})
    assert client.list_runs(limit=0) == []
    with pytest.raises(ParamError, match="limit must be 0 or more, got -1"):
        client.list_runs(limit=-1)
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        client.store.list_runs(limit=-1)


def test_list_runs_orders_runs_created_at_the_same_time(client: Client) -> None:
    """Runs with one creation time come in one order on every call: newest id first."""
    ids = [client.start(chain(), {"x": i}) for i in range(5)]
    sql(client.store, "UPDATE runs SET created_at = (SELECT MIN(created_at) FROM runs)")
    assert len({r.created_at for r in client.list_runs()}) == 1  # really the same time now
    newest_id_first = sorted(ids, key=uuid.UUID, reverse=True)
    assert [r.id for r in client.list_runs()] == newest_id_first
    assert [r.id for r in client.list_runs(limit=2)] == newest_id_first[:2]
    assert [r.id for r in client.list_runs(status="pending", workflow="reads")] == newest_id_first


@pytest.mark.parametrize(
    "run_id", ["0b6d3c2e-6f5e-4f7a-9c61-2f1d8e4a5b70", "not-a-run-id", "", "1234"]
)
def test_unknown_run_id(client: Client, run_id: str) -> None:
    client.start(chain(), {"x": 1})
    with pytest.raises(RunNotFoundError, match="no run with id"):
        client.get(run_id)
    with pytest.raises(RunNotFoundError, match="no run with id"):
        client.history(run_id)
    with pytest.raises(RunNotFoundError):
        client.store.get_run(run_id, with_steps=False)


def test_any_spelling_of_a_run_id_finds_the_run(client: Client) -> None:
    run_id = client.start(chain(), {"x": 1})
    plain = run_id.replace("-", "")
    for spelling in (run_id.upper(), plain, "{" + run_id + "}", "urn:uuid:" + run_id):
        assert client.get(spelling).id == run_id
        assert [e.type for e in client.history(spelling)][:1] == ["run.created"]


def test_history_of_a_failed_and_retried_step(client: Client) -> None:
    run_id = client.start(chain(), {"x": 1})
    [a1] = claim(client, "w1")
    report(client, [failed(a1, "first")])
    events = client.history(run_id)
    assert [(e.type, e.step_id, e.attempt, e.actor) for e in events] == [
        ("run.created", None, None, None),
        ("step.queued", "a", None, None),
        ("run.started", None, None, "w1"),
        ("step.started", "a", 1, "w1"),
        ("step.retrying", "a", 1, "w1"),
    ]
    assert events[-1].details == {
        "error": {"type": "ValueError", "message": "first", "traceback": "Traceback: here"},
        "retry_in": 0.0,
    }
    assert all(e.run_id == run_id for e in events)


def test_steps_keep_workflow_order(client: Client) -> None:
    wf = Workflow("order")
    last = wf.step("z_last", noop)
    wf.step("a_first", noop)
    wf.step("m_mid", noop, needs=[last])
    run_id = client.start(wf)
    assert list(client.get(run_id).steps) == ["z_last", "a_first", "m_mid"]
    assert client.get(run_id).steps["m_mid"].status is StepStatus.WAITING
