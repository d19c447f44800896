"""SIGKILL a worker process inside a map, a loop or a sub-workflow; another finishes the run.

Each test waits until the run, as the database holds it, is part way through
its control flow, stops the worker outside any transaction, reads the run
(what the kill will leave behind) and kills the worker. A new worker finishes
the run. What had completed before the kill must not run again; what was
running is lost (``LeaseExpired``) and runs again in the new worker; the
side-effect log shows every instance's effect once per attempt, and each
completion is recorded once.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import legato
from legato import Client, Event, Run, RunStatus, StepStatus, Workflow

from .support import ProcessGroup, WorkerProcess, duplicates, read_log
from .tasks import keyed, logged

pytestmark = pytest.mark.chaos


def start_worker(procs: ProcessGroup, url: str, concurrency: int) -> WorkerProcess:
    """A worker with a short lease, so the attempts a killed one held are soon lost."""
    return procs.worker(url, lease=1.0, sweep=0.2, concurrency=concurrency)


# -- the kill -------------------------------------------------------------------------------


def kill_when(
    client: Client,
    run_id: str,
    worker: WorkerProcess,
    url: str,
    ready: Callable[[Run], bool],
    *,
    what: str,
    timeout: float = 30,
) -> Run:
    """SIGKILL ``worker`` at a moment ``ready`` holds for the run; return the run then.

    Polls the run; when ``ready`` holds, stops the worker outside any transaction
    and reads the run again: that is what the kill leaves behind. If ``ready``
    no longer holds, the worker goes on and the wait with it.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(run_id)
        if run.finished:
            raise AssertionError(f"the run finished before {what}: {run}")
        if not worker.alive:
            raise AssertionError(f"{worker} died before {what}:\n{worker.stderr()}")
        if ready(run):
            worker.freeze(url)
            run = client.get(run_id)
            if ready(run):
                worker.kill()
                return run
            worker.thaw()
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def task_keys(run: Run, status: StepStatus | None = None) -> set[str]:
    """The task calls of ``run`` (items, their steps, iterations' steps), by key."""
    return {
        key
        for key, step in run.steps.items()
        if step.kind == "task" and (status is None or step.status is status)
    }


def in_progress(run: Run, log: str) -> set[str]:
    """The task calls running in ``run`` whose task has begun (its ``start`` is logged)."""
    begun = {
        (r["step"], r["attempt"])
        for r in read_log(log)
        if r["run"] == run.id and r["event"] == "start"
    }
    return {k for k in task_keys(run, StepStatus.RUNNING) if (k, run.steps[k].attempt) in begun}


# -- what the kill must have left ----------------------------------------------------------


def check_after_kill(
    before: Run,
    after: Run,
    events: list[Event],
    log: str,
    killed: WorkerProcess,
    finisher: WorkerProcess,
) -> None:
    """Each task call of ``after`` against what ``before`` (the kill) held of it.

    Completed before the kill: one attempt, in the killed worker, its effect
    once, nothing after. Running at the kill: attempt 1 lost, attempt 2
    completed in the finisher. Not yet started: one attempt, in the finisher.
    """
    effects = [r for r in read_log(log) if r["run"] == after.id]
    by_key: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for r in effects:
        by_key[r["step"]][r["event"]].append((r["attempt"], r["pid"]))
    assert not duplicates((r["step"], r["attempt"]) for r in effects if r["event"] == "start"), (
        "an attempt ran twice"
    )
    assert set(by_key) <= task_keys(after), "effects of instances the run does not have"

    done_before = task_keys(before, StepStatus.COMPLETED)
    running_before = task_keys(before, StepStatus.RUNNING)
    a, b = killed.pid, finisher.pid
    for key in sorted(task_keys(after)):
        step = after.steps[key]
        seen = by_key[key]
        assert step.status is StepStatus.COMPLETED, (key, step)
        attempts = [(x.number, x.status) for x in step.attempts]
        assert step.output["key"] == key and step.output["attempt"] == step.attempt, step.output
        assert step.worker is not None
        if key in done_before:
            assert attempts == [(1, "completed")], (key, attempts)
            assert seen["start"] == [(1, a)], f"{key} completed before the kill and ran again"
            assert seen["done"] == [(1, a)], f"{key}'s effect was not recorded once"
            assert f":{a}:" in step.worker
        elif key in running_before:
            assert attempts == [(1, "lost"), (2, "completed")], (key, attempts)
            assert (step.failures, step.lost) == (0, 1)
            lost = step.attempts[0].error
            assert lost is not None and lost.type == "LeaseExpired", lost
            # attempt 1 may have been claimed but not yet called when the worker stopped
            assert seen["start"] in ([(1, a), (2, b)], [(2, b)]), (key, seen["start"])
            # its effect may have been recorded and its report lost with the worker
            assert seen["done"] in ([(2, b)], [(1, a), (2, b)]), (key, seen["done"])
            assert f":{b}:" in step.worker
        else:
            assert attempts == [(1, "completed")], (key, attempts)
            assert seen["start"] == seen["done"] == [(1, b)], (key, seen)
            assert f":{b}:" in step.worker

    completed = Counter(e.step_id for e in events if e.type == "step.completed")
    assert {k: completed[k] for k in task_keys(after)} == dict.fromkeys(task_keys(after), 1)
    assert max(completed.values()) == 1, "a step completed twice"
    assert Counter(e.type for e in events)["run.completed"] == 1
    assert not [e for e in events if e.type in ("step.retrying", "step.failed")]
    lost_events = [e for e in events if e.type == "step.lost"]
    assert sorted(e.step_id or "" for e in lost_events) == sorted(running_before)
    assert {e.actor for e in lost_events} <= {"lease-sweeper"}
    assert killed.popen.returncode == -9
    err = finisher.stderr()
    assert "database is locked" not in err and "ERROR" not in err, err


def most_at_once(log: str, run_id: str, events: list[Event], killed: WorkerProcess) -> int:
    """The most task calls of the run in progress at once, by the side-effect log.

    A call is in progress from its ``start`` to its ``done``; one the kill cut
    short, until its attempt was marked lost (its slot is held till then).
    """
    lost_at = {(e.step_id, e.attempt): e.at.timestamp() for e in events if e.type == "step.lost"}
    effects = [r for r in read_log(log) if r["run"] == run_id]
    finished = {(r["step"], r["attempt"]) for r in effects if r["event"] == "done"}
    marks: list[tuple[float, int]] = []
    for r in effects:
        if r["event"] == "done":
            marks.append((r["t"], -1))
        elif r["event"] == "start":
            marks.append((r["t"], 1))
            if (r["step"], r["attempt"]) not in finished:
                assert r["pid"] == killed.pid, r
                marks.append((lost_at[(r["step"], r["attempt"])], -1))
    now = peak = 0
    for _, delta in sorted(marks):
        now += delta
        peak = max(peak, now)
    return peak


# -- a map calling a task per item ---------------------------------------------------------

ITEMS = [7 * i + 1 for i in range(30)]


def map_task_workflow() -> Workflow:
    wf = Workflow("kill_in_map_task")
    m = wf.map(
        "m",
        keyed,
        over=wf.param("xs"),
        max_parallel=4,
        key="m[{}]",
        index=legato.index,
        x=legato.item,
        hold=0.15,
        stagger=0.05,
        **logged(wf),
    )
    wf.outputs(result=m.output)
    return wf


def test_kill_inside_a_map_of_a_task(db_url: str, procs: ProcessGroup, tmp_path: Path) -> None:
    log = str(tmp_path / "effects.log")
    with Client(db_url) as client:
        run_id = client.start(map_task_workflow(), {"xs": ITEMS, "log": log, "url": db_url})
        a = start_worker(procs, db_url, 6)

        def part_way(run: Run) -> bool:
            return (
                len(task_keys(run, StepStatus.COMPLETED)) >= 8 and len(in_progress(run, log)) >= 2
            )

        before = kill_when(client, run_id, a, db_url, part_way, what="items done and running")
        b = start_worker(procs, db_url, 6)
        run = client.wait(run_id, timeout=60)
        events = client.history(run_id)

    assert run.status is RunStatus.COMPLETED, run
    keys = [f"m[{i}]" for i in range(len(ITEMS))]
    assert task_keys(run) == set(keys)
    assert list(run.steps) == ["m", *keys]
    result = run.outputs["result"] if run.outputs else None
    assert result == [run.steps[k].output for k in keys]
    assert [(o["key"], o["x"]) for o in result] == list(zip(keys, ITEMS, strict=True))
    assert run.steps["m"].status is StepStatus.COMPLETED
    assert run.steps["m"].output == result
    for i, key in enumerate(keys):
        assert (run.steps[key].scope, run.steps[key].index, run.steps[key].item) == (
            "m",
            i,
            ITEMS[i],
        )
    check_after_kill(before, run, events, log, a, b)
    assert len(task_keys(before, StepStatus.RUNNING)) >= 1
    assert most_at_once(log, run_id, events, a) <= 4, "max_parallel did not hold"


# -- a map running steps of its own per item ------------------------------------------------

PAIRS = [3 * i for i in range(12)]


def map_steps_workflow() -> Workflow:
    wf = Workflow("kill_in_map_steps")
    common = logged(wf)
    m = wf.map("m", over=wf.param("xs"), max_parallel=3)
    first = m.step(
        "a",
        keyed,
        key="m[{}].a",
        index=legato.index,
        x=legato.item,
        hold=0.1,
        stagger=0.1,
        **common,
    )
    m.step(
        "b",
        keyed,
        key="m[{}].b",
        index=legato.index,
        x=first.output["x"],
        hold=0.1,
        stagger=0.1,
        **common,
    )
    wf.outputs(result=m.output)
    return wf


def test_kill_inside_a_map_of_steps(db_url: str, procs: ProcessGroup, tmp_path: Path) -> None:
    log = str(tmp_path / "effects.log")
    with Client(db_url) as client:
        run_id = client.start(map_steps_workflow(), {"xs": PAIRS, "log": log, "url": db_url})
        a = start_worker(procs, db_url, 6)

        def half_done_item(run: Run) -> bool:
            # items completed, and an item whose first step completed and whose second is
            # under way
            items_done = [
                k
                for k, s in run.steps.items()
                if s.kind == "item" and s.status.value == "completed"
            ]
            return len(items_done) >= 3 and any(k.endswith(".b") for k in in_progress(run, log))

        before = kill_when(
            client, run_id, a, db_url, half_done_item, what="an item part way through its steps"
        )
        b = start_worker(procs, db_url, 6)
        run = client.wait(run_id, timeout=60)
        events = client.history(run_id)

    assert run.status is RunStatus.COMPLETED, run
    items = [f"m[{i}]" for i in range(len(PAIRS))]
    assert task_keys(run) == {f"{item}.{s}" for item in items for s in "ab"}
    assert [k for k, s in run.steps.items() if s.kind == "item"] == items
    for i, item in enumerate(items):
        assert run.steps[item].status is StepStatus.COMPLETED
        assert run.steps[item].index == i
        second = run.steps[f"{item}.b"].inputs
        assert second is not None and second["x"] == PAIRS[i]
    result = run.outputs["result"] if run.outputs else None
    assert result == [run.steps[f"{item}.b"].output for item in items]
    assert [(o["key"], o["x"]) for o in result] == [
        (f"{item}.b", x) for item, x in zip(items, PAIRS, strict=True)
    ]
    check_after_kill(before, run, events, log, a, b)
    # the kill caught an item between its steps: its first step stays done
    split = [k for k in task_keys(before, StepStatus.RUNNING) if k.endswith(".b")]
    assert split and all(before.steps[k[:-1] + "a"].status is StepStatus.COMPLETED for k in split)
    assert most_at_once(log, run_id, events, a) <= 3, "max_parallel did not hold"


# -- a loop --------------------------------------------------------------------------------

LAST = 5  # the loop stops after the iteration whose body outputs x >= LAST


def loop_workflow() -> Workflow:
    wf = Workflow("kill_in_loop")
    lp = wf.loop("lp", max_iterations=20)
    lp.step(
        "body",
        keyed,
        key="lp[{}].body",
        index=legato.iteration,
        x=legato.iteration,
        hold=0.25,
        **logged(wf),
    )
    lp.repeat_until(f"${{{{ steps.body.output.x >= {LAST} }}}}")
    wf.outputs(last=lp.output)
    return wf


def test_kill_inside_a_loop_iteration(db_url: str, procs: ProcessGroup, tmp_path: Path) -> None:
    log = str(tmp_path / "effects.log")
    with Client(db_url) as client:
        run_id = client.start(loop_workflow(), {"log": log, "url": db_url})
        a = start_worker(procs, db_url, 2)

        def mid_loop(run: Run) -> bool:
            # the body of iteration 2 or 3 is under way: two or more done, more to come
            return bool(in_progress(run, log) & {"lp[2].body", "lp[3].body"})

        before = kill_when(client, run_id, a, db_url, mid_loop, what="the loop's third iteration")
        b = start_worker(procs, db_url, 2)
        run = client.wait(run_id, timeout=60)
        events = client.history(run_id)

    assert run.status is RunStatus.COMPLETED, run
    iterations = [f"lp[{i}]" for i in range(LAST + 1)]
    assert [k for k, s in run.steps.items() if s.kind == "iteration"] == iterations
    assert task_keys(run) == {f"{it}.body" for it in iterations}
    for i, it in enumerate(iterations):
        step = run.steps[it]
        assert (step.status, step.index, step.scope) == (StepStatus.COMPLETED, i, "lp")
        assert run.steps[f"{it}.body"].output["x"] == i
    last = run.steps[f"lp[{LAST}].body"].output
    assert run.steps["lp"].status is StepStatus.COMPLETED
    assert run.steps["lp"].output == last
    assert run.outputs == {"last": last}
    [cut] = task_keys(before, StepStatus.RUNNING)
    assert cut in ("lp[2].body", "lp[3].body")
    assert task_keys(before, StepStatus.COMPLETED) == {f"lp[{i}].body" for i in range(int(cut[3]))}
    check_after_kill(before, run, events, log, a, b)


# -- a sub-workflow -----------------------------------------------------------------------


def child_workflow() -> Workflow:
    wf = Workflow("kill_in_child")
    common: dict[str, Any] = {"index": 0, "hold": 0.25, **logged(wf)}
    c1 = wf.step("c1", keyed, key="c1", x=1, **common)
    c2 = wf.step("c2", keyed, key="c2", x=c1.output["x"], **common)
    c3 = wf.step("c3", keyed, key="c3", x=c2.output["x"], **common)
    wf.outputs(last=c3.output)
    return wf


def parent_workflow() -> Workflow:
    wf = Workflow("kill_in_parent")
    common: dict[str, Any] = {"index": 0, "hold": 0.05, **logged(wf)}
    pre = wf.step("pre", keyed, key="pre", x=0, **common)
    sub = wf.sub_workflow(
        "sub",
        child_workflow(),
        params={"log": wf.param("log"), "url": wf.param("url")},
        needs=[pre],
    )
    post = wf.step("post", keyed, key="post", x=sub.output["last"]["x"], **common)
    wf.outputs(child=sub.output, post=post.output)
    return wf


def test_kill_inside_a_child_run(db_url: str, procs: ProcessGroup, tmp_path: Path) -> None:
    log = str(tmp_path / "effects.log")
    with Client(db_url) as client:
        run_id = client.start(parent_workflow(), {"log": log, "url": db_url})
        a = start_worker(procs, db_url, 2)

        def child_of(run: Run) -> str | None:
            return run.steps["sub"].child_run_id if "sub" in run.steps else None

        child_id = ""

        def child_mid_way(run: Run) -> bool:
            nonlocal child_id
            child_id = child_of(run) or ""
            if not child_id:
                return False
            return "c2" in in_progress(client.get(child_id), log)

        kill_when(client, run_id, a, db_url, child_mid_way, what="the child run's second step")
        child_before = client.get(child_id)
        b = start_worker(procs, db_url, 2)
        run = client.wait(run_id, timeout=60)
        child = client.get(child_id)
        events = client.history(run_id)
        child_events = client.history(child_id)

    assert run.status is RunStatus.COMPLETED, run
    assert child.status is RunStatus.COMPLETED, child
    assert child.parent_run_id == run_id and child.parent_step == "sub"
    assert child_of(run) == child_id, "the parent started another child"
    assert child.outputs == {"last": child.steps["c3"].output}
    assert run.outputs == {"child": child.outputs, "post": run.steps["post"].output}
    assert run.steps["post"].output["x"] == 1
    assert task_keys(child_before, StepStatus.COMPLETED) == {"c1"}
    assert task_keys(child_before, StepStatus.RUNNING) == {"c2"}
    check_after_kill(child_before, child, child_events, log, a, b)

    # the parent's own steps: pre ran once, before the kill; post once, after it
    effects = [r for r in read_log(log) if r["run"] == run_id]
    assert [(r["step"], r["event"], r["pid"]) for r in effects] == [
        ("pre", "start", a.pid),
        ("pre", "done", a.pid),
        ("post", "start", b.pid),
        ("post", "done", b.pid),
    ]
    assert {r["run"] for r in read_log(log)} == {run_id, child_id}
    completed = Counter(e.step_id for e in events if e.type == "step.completed")
    assert completed == {"pre": 1, "sub": 1, "post": 1}
    assert not [e for e in events if e.type in ("step.lost", "step.retrying", "step.failed")]
