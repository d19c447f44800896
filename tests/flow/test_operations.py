"""Operations on runs, on each backend: pause, resume, retry, rerun, restart, skip, bulk.

Where the order of events matters the store is driven directly with
``claim``/``report``, so nothing depends on timing; whole runs go through a
worker ticked until they end.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import legato
from legato import Client, OperationRefusedError, RunStatus, StepStatus, Workflow
from legato.errors import ParamError
from store.helpers import claim, drive, failed, ok, report

from .tasks_ops import ALL_TASKS, calls, counted, echo, fixable


def _claim(client: Client, **kwargs: Any) -> list[Any]:
    return claim(client, tasks=ALL_TASKS, **kwargs)


def _keys(steps: list[Any]) -> list[str]:
    return sorted(s.step_id for s in steps)


def statuses(client: Client, run_id: str) -> dict[str, str]:
    return {k: s.status.value for k, s in client.get(run_id).steps.items()}


def chain(name: str = "chain") -> Workflow:
    """``a`` -> ``b`` -> ``c``, each passing its output on."""
    wf = Workflow(name)
    a = wf.step("a", echo, x=1)
    b = wf.step("b", echo, x=a.output)
    wf.step("c", echo, x=b.output)
    return wf


# -- retry: the Rhythm scenario --------------------------------------------------------------


def test_a_retried_run_reruns_its_failed_step_with_its_inputs_then_goes_on(
    client: Client, tmp_path: Path
) -> None:
    """Step 2 fails; its code is fixed; retry runs step 2 with the inputs it had, then
    step 3. Step 1 is not run again."""
    key = uuid.uuid4().hex
    flag = tmp_path / "fixed"
    wf = Workflow("rhythm")
    one = wf.step("one", counted, key=f"{key}-one", x="from one")
    two = wf.step("two", fixable, key=f"{key}-two", x=one.output, fixed_when=str(flag))
    wf.step("three", counted, key=f"{key}-three", x=two.output)
    run_id = client.start(wf)
    worker = legato.Worker(client, worker_id="w1", concurrency=1)
    try:
        run = drive(client, run_id, worker)
        assert run.status is RunStatus.FAILED
        assert run.error is not None and run.error.step == "two"
        assert statuses(client, run_id) == {
            "one": "completed",
            "two": "failed",
            "three": "cancelled",
        }
        flag.write_text("the bug is fixed")
        again = client.retry(run_id, actor="ada")
        assert again == ["three", "two"]
        assert client.get(run_id).status is RunStatus.RUNNING
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED
    assert run.attempt == 2
    assert calls(f"{key}-one") == ["from one"]  # step 1 not run again
    assert calls(f"{key}-two") == ["from one", "from one"]  # the same inputs both times
    assert calls(f"{key}-three") == [{"fixed": "from one"}]
    two_step = run.steps["two"]
    assert two_step.inputs == {"key": f"{key}-two", "x": "from one", "fixed_when": str(flag)}
    assert [(a.number, a.status) for a in two_step.attempts] == [(1, "failed"), (2, "completed")]
    assert run.steps["one"].attempt == 1
    retried = [e for e in client.history(run_id) if e.type == "run.retried"]
    assert [(e.actor, (e.details or {})["attempt"]) for e in retried] == [("ada", 2)]


def test_a_cancelled_run_is_retried_from_where_it_stopped(client: Client) -> None:
    run_id = client.start(chain())
    [a] = _claim(client)
    report(client, [ok(a, 1)])
    client.cancel(run_id, "not now")
    assert statuses(client, run_id) == {"a": "completed", "b": "cancelled", "c": "cancelled"}
    assert client.retry(run_id) == ["b", "c"]
    [b] = _claim(client)
    assert (b.step_id, b.kwargs) == ("b", {"x": 1})
    report(client, [ok(b, 2)])
    [c] = _claim(client)
    report(client, [ok(c, 3)])
    run = client.get(run_id)
    assert (run.status is RunStatus.COMPLETED and run.outputs is None) or run.outputs == {}
    assert run.error is None and run.finished_at is not None


def test_retry_of_a_failed_map_reruns_only_its_failed_items(client: Client) -> None:
    wf = Workflow("map_retry")
    m = wf.map("m", echo, over=[10, 20, 30, 40], x=legato.item)
    wf.step("after", echo, x=m.output)
    run_id = client.start(wf)
    items = {s.step_id: s for s in _claim(client)}
    assert sorted(items) == ["m[0]", "m[1]", "m[2]", "m[3]"]
    report(client, [ok(items["m[0]"], 10), ok(items["m[1]"], 20), ok(items["m[3]"], 40)])
    report(client, [failed(items["m[2]"], retryable=False)])
    assert client.get(run_id).status is RunStatus.FAILED
    assert client.retry(run_id) == ["after", "m[2]", "m"]
    [again] = _claim(client)
    assert (again.step_id, again.kwargs, again.attempt) == ("m[2]", {"x": 30}, 2)
    report(client, [ok(again, 30)])
    [after] = _claim(client)
    assert after.kwargs == {"x": [10, 20, 30, 40]}
    report(client, [ok(after, "done")])
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert [run.steps[f"m[{i}]"].attempt for i in range(4)] == [1, 1, 2, 1]


def test_retry_of_a_failed_loop_goes_on_from_its_failed_iteration(client: Client) -> None:
    wf = Workflow("loop_retry")
    lp = wf.loop("lp", until="${{ iteration >= 3 }}", max_iterations=4)
    lp.step("body", echo, x=legato.iteration)
    run_id = client.start(wf)
    for i in range(2):
        [body] = _claim(client)
        assert body.step_id == f"lp[{i}].body"
        report(client, [ok(body, i)])
    [body] = _claim(client)
    report(client, [failed(body, retryable=False)])
    assert client.get(run_id).status is RunStatus.FAILED
    client.retry(run_id)
    seen = []
    while True:
        steps = _claim(client)
        if not steps:
            break
        [body] = steps
        seen.append((body.step_id, body.attempt))
        report(client, [ok(body, body.kwargs["x"])])
    assert seen == [("lp[2].body", 2), ("lp[3].body", 1)]
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["lp[0].body"].attempt == 1


def test_retry_of_a_failed_sub_workflow_step_starts_a_new_child(client: Client) -> None:
    child = Workflow("child_of_retry")
    child.step("inner", echo, x="inner")
    wf = Workflow("parent_of_retry")
    wf.sub_workflow("sub", child)
    run_id = client.start(wf)
    [inner] = _claim(client)
    first_child = inner.run_id
    report(client, [failed(inner, retryable=False)])
    assert client.get(run_id).status is RunStatus.FAILED
    with pytest.raises(OperationRefusedError, match="sub-workflow run of run"):
        client.retry(first_child)
    client.retry(run_id)
    [inner] = _claim(client)
    assert inner.run_id != first_child
    report(client, [ok(inner, "inner")])
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["sub"].child_run_id == inner.run_id
    assert client.get(first_child).status is RunStatus.FAILED  # kept as it was


# -- rerun: the Conductor scenario ------------------------------------------------------------


def test_rerun_from_a_middle_step_with_new_params_reruns_it_and_what_follows(
    client: Client,
) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("conductor")
    p = wf.param("p", type="int")
    a = wf.step("a", counted, key=f"{key}-a", x="a")
    b = wf.step("b", counted, key=f"{key}-b", x=p, needs=[a])
    c = wf.step("c", counted, key=f"{key}-c", x=b.output)
    wf.outputs(result=c.output)
    run_id = client.start(wf, {"p": 1})
    worker = legato.Worker(client, worker_id="w1", concurrency=1)
    try:
        assert drive(client, run_id, worker).outputs == {"result": 1}
        with pytest.raises(ParamError, match="has no step 'nope'"):
            client.rerun(run_id, "nope")
        assert client.rerun(run_id, "b", params={"p": 2}, actor="ops") == ["b", "c"]
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": 2} and run.params == {"p": 2} and run.attempt == 2
    assert calls(f"{key}-a") == ["a"]
    assert calls(f"{key}-b") == [1, 2]
    assert calls(f"{key}-c") == [1, 2]
    rerun = [e for e in client.history(run_id) if e.type == "run.rerun"]
    assert [(e.actor, (e.details or {})["from_step"]) for e in rerun] == [("ops", "b")]


def test_rerun_of_a_map_item_reruns_the_item_and_what_follows_the_map(client: Client) -> None:
    wf = Workflow("rerun_item")
    m = wf.map("m", echo, over=[1, 2, 3], x=legato.item)
    wf.step("after", echo, x=m.output)
    run_id = client.start(wf)
    report(client, [ok(s, s.kwargs["x"]) for s in _claim(client)])
    [after] = _claim(client)
    report(client, [ok(after, "first")])
    assert client.get(run_id).status is RunStatus.COMPLETED
    assert client.rerun(run_id, "m[1]") == ["after", "m[1]", "m"]
    [item] = _claim(client)
    assert (item.step_id, item.attempt) == ("m[1]", 2)
    report(client, [ok(item, 200)])
    [after] = _claim(client)
    assert after.kwargs == {"x": [1, 200, 3]}
    report(client, [ok(after, "second")])
    assert client.get(run_id).status is RunStatus.COMPLETED


def test_rerun_is_refused_while_the_run_or_a_step_of_it_runs(client: Client) -> None:
    run_id = client.start(chain())
    with pytest.raises(OperationRefusedError, match=f"run {run_id} is pending: only a completed"):
        client.rerun(run_id, "a")
    [a] = _claim(client)
    report(client, [failed(a, retryable=False)])
    assert client.get(run_id).status is RunStatus.FAILED


# -- restart ------------------------------------------------------------------------------------


def test_restart_runs_everything_again_and_keeps_the_history(client: Client) -> None:
    run_id = client.start(chain())
    for _ in range(3):
        report(client, [ok(s, 1) for s in _claim(client)])
    assert client.get(run_id).status is RunStatus.COMPLETED
    before = len(client.history(run_id))
    assert client.restart(run_id, actor="ops") == 2
    run = client.get(run_id)
    assert run.status is RunStatus.RUNNING and run.attempt == 2
    assert statuses(client, run_id) == {"a": "queued", "b": "waiting", "c": "waiting"}
    for _ in range(3):
        report(client, [ok(s, 2) for s in _claim(client)])
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED and run.steps["c"].output == 2
    history = client.history(run_id)
    assert len(history) > before
    assert [e.type for e in history].count("run.completed") == 2


def test_restart_on_the_latest_version_uses_the_newest_deployed(client: Client) -> None:
    old = Workflow("versions", version="1")
    old.step("a", echo, x="v1")
    new = Workflow("versions", version="2")
    new.step("a", echo, x="v2")
    run_id = client.start(old)
    report(client, [ok(s, "v1") for s in _claim(client)])
    client.deploy(new)
    client.restart(run_id, use_latest_version=True)
    [a] = _claim(client)
    assert a.kwargs == {"x": "v2"}
    report(client, [ok(a, "v2")])
    run = client.get(run_id)
    assert (run.version, run.status) == ("2", RunStatus.COMPLETED)


# -- skip ---------------------------------------------------------------------------------------


def test_skipping_a_waiting_step_gives_its_output_to_what_follows(client: Client) -> None:
    run_id = client.start(chain())
    client.skip(run_id, "b", output="given", actor="ops")
    a, c = sorted(_claim(client), key=lambda s: s.step_id)  # c waits for b alone
    assert (a.step_id, c.step_id, c.kwargs) == ("a", "c", {"x": "given"})
    report(client, [ok(a, 1), ok(c, "end")])
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert (run.steps["b"].status, run.steps["b"].output) == (StepStatus.COMPLETED, "given")


def test_skipping_the_failed_step_of_a_failed_run_lets_it_go_on(client: Client) -> None:
    run_id = client.start(chain())
    [a] = _claim(client)
    report(client, [ok(a, 1)])
    [b] = _claim(client)
    report(client, [failed(b, retryable=False)])
    with pytest.raises(OperationRefusedError, match="its step 'a' is completed"):
        client.skip(run_id, "a", output=0)
    client.skip(run_id, "b", output="instead")
    [c] = _claim(client)
    assert c.kwargs == {"x": "instead"}
    report(client, [ok(c, "end")])
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert [(x.number, x.status) for x in run.steps["b"].attempts] == [(1, "failed")]
    with pytest.raises(OperationRefusedError, match="a step of a completed run"):
        client.skip(run_id, "c")


def test_a_running_step_cannot_be_skipped(client: Client) -> None:
    run_id = client.start(chain())
    _claim(client)
    with pytest.raises(
        OperationRefusedError,
        match="its step 'a' is running: only a waiting, queued or suspended step",
    ):
        client.skip(run_id, "a", output=1)


# -- which operation is legal when -----------------------------------------------------------------


def test_each_operation_says_why_it_is_refused(client: Client) -> None:
    run_id = client.start(chain())
    with pytest.raises(OperationRefusedError, match="only a paused run can be resumed"):
        client.resume(run_id)
    with pytest.raises(OperationRefusedError, match="pending: only a failed or cancelled run"):
        client.retry(run_id)
    with pytest.raises(OperationRefusedError, match="only a completed, failed or cancelled"):
        client.restart(run_id)
    for _ in range(3):
        report(client, [ok(s, 1) for s in _claim(client)])
    with pytest.raises(
        OperationRefusedError, match=f"run {run_id} is completed: only a paused run"
    ):
        client.resume(run_id)
    with pytest.raises(OperationRefusedError, match="completed: only a pending or running run"):
        client.pause(run_id)
    with pytest.raises(OperationRefusedError, match="completed: only a pending, running or paused"):
        client.cancel(run_id)
    with pytest.raises(legato.RunNotFoundError):
        client.pause("01a2343c-0000-7000-8000-000000000000")
    assert client.get(run_id).status is RunStatus.COMPLETED


# -- bulk ----------------------------------------------------------------------------------------


def test_bulk_retry_reports_what_changed_and_what_was_refused(client: Client) -> None:
    name = f"bulk_{uuid.uuid4().hex[:6]}"
    runs = [client.start(chain(name), tags={"env": "prod" if i else "dev"}) for i in range(3)]
    for run_id in runs[:2]:
        client.cancel(run_id)
    done = runs[2]
    for _ in range(3):
        report(client, [ok(s, 1) for s in _claim(client)])
    assert client.get(done).status is RunStatus.COMPLETED
    result = client.retry_many(workflow=name, tags={"env": "prod"}, actor="ops")
    assert result.changed == (runs[1],)
    assert result.refused == {
        done: f"run {done} is completed: only a failed or cancelled run can be retried"
    }
    assert result.matched == 2
    result = client.cancel_many(workflow=name, status="running")
    assert result.changed == (runs[1],) and result.refused == {}
    assert client.resume_many(workflow=name).refused.keys() == set(runs)


# -- pause and resume ------------------------------------------------------------------------------


def test_a_paused_run_finishes_what_runs_and_starts_nothing_until_resumed(
    client: Client,
) -> None:
    run_id = client.start(chain())
    [a] = _claim(client)
    client.pause(run_id, actor="ops")
    assert client.get(run_id).status is RunStatus.PAUSED
    assert report(client, [ok(a, 1)]).accepted == 1  # what ran finishes and is kept
    assert statuses(client, run_id)["b"] == "queued"
    assert _claim(client) == []  # but nothing new starts
    client.resume(run_id, actor="ops")
    [b] = _claim(client)
    assert b.step_id == "b"
    types = [(e.type, e.actor) for e in client.history(run_id) if e.type.startswith("run.")]
    assert ("run.paused", "ops") in types and ("run.resumed", "ops") in types


def test_a_paused_pending_run_keeps_its_queued_steps_out_of_claims(client: Client) -> None:
    run_id = client.start(chain())
    other = client.start(chain("other"))
    client.pause(run_id)
    [a] = _claim(client)
    assert a.run_id == other  # the paused run's step is held; the other run's is not
    client.resume(run_id)
    [a] = _claim(client)
    assert a.run_id == run_id
    assert client.get(run_id).status is RunStatus.RUNNING


def test_a_paused_run_holds_its_timers_until_it_resumes(client: Client) -> None:
    wf = Workflow("paused_sleep")
    nap = wf.sleep("nap", "1h")
    wf.step("after", echo, x="woke", needs=[nap])
    run_id = client.start(wf)
    client.pause(run_id)
    client.store.clock.advance(7200)  # type: ignore[attr-defined]
    assert _claim(client, sweep=True) == []
    assert statuses(client, run_id)["nap"] == "suspended"
    client.resume(run_id)
    [after] = _claim(client, sweep=True)
    assert after.step_id == "after"


def test_a_map_paused_mid_way_holds_its_items_and_their_retries(client: Client) -> None:
    wf = Workflow("paused_map")
    wf.map(
        "m",
        echo,
        over=[1, 2, 3, 4],
        x=legato.item,
        max_parallel=2,
        retry={"max_attempts": 3, "delay": 0},
    )
    run_id = client.start(wf)
    first, second = _claim(client)
    client.pause(run_id)
    report(client, [ok(first, 1), failed(second)])  # a slot frees, a retry is due
    assert _claim(client) == []
    client.resume(run_id)
    assert _keys(_claim(client)) == ["m[1]", "m[2]"]


def test_pausing_a_run_pauses_its_child_runs_and_resuming_it_resumes_them(
    client: Client,
) -> None:
    child = Workflow("paused_child")
    child.step("inner", echo, x="inner")
    wf = Workflow("paused_parent")
    wf.sub_workflow("sub", child)
    run_id = client.start(wf)
    child_id = client.get(run_id).steps["sub"].child_run_id
    assert child_id is not None
    client.pause(run_id)
    assert client.get(child_id).status is RunStatus.PAUSED
    assert _claim(client) == []
    with pytest.raises(OperationRefusedError, match="resume the parent"):
        client.resume(child_id)
    client.resume(run_id)
    assert client.get(child_id).status is RunStatus.RUNNING
    [inner] = _claim(client)
    assert inner.run_id == child_id


def test_a_signal_to_a_paused_run_completes_its_wait_and_what_follows_waits(
    client: Client,
) -> None:
    wf = Workflow("paused_signal")
    approval = wf.wait_for_signal("approval", "approve")
    wf.step("after", echo, x=approval.output)
    run_id = client.start(wf)
    client.pause(run_id)
    assert client.signal(run_id, "approve", {"ok": True}) == "approval"
    assert _claim(client) == []
    client.resume(run_id)
    [after] = _claim(client)
    assert after.kwargs == {"x": {"ok": True}}


def test_a_run_whose_last_step_finishes_while_paused_completes(client: Client) -> None:
    wf = Workflow("last_while_paused")
    wf.step("only", echo, x=1)
    run_id = client.start(wf)
    [only] = _claim(client)
    client.pause(run_id)
    report(client, [ok(only, 1)])
    assert client.get(run_id).status is RunStatus.COMPLETED
