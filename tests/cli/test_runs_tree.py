"""``legato runs show`` for control flow: what a waiting step waits for, a map's
items counted with the failed ones kept, a loop's iterations, a child run; and
``legato runs signal`` / ``legato runs cancel`` answering a run from the shell."""

from __future__ import annotations

import json
import time
from types import ModuleType

from legato import Client, RunStatus, StepStatus, Worker

from .helpers import Invoke, assert_usage_error, target


def drive_until(client: Client, run_id: str, done: object, timeout: float = 15.0) -> None:
    """Tick a worker in this process until ``done(run)`` holds."""
    worker = Worker(client, worker_id="tree", concurrency=2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            worker.tick()
            if done(client.get(run_id)):  # type: ignore[operator]
                worker.tick()
                return
            time.sleep(0.005)
        raise AssertionError(f"not reached within {timeout}s: {client.get(run_id)!r}")
    finally:
        worker.close()


def line_of(out: str, text: str) -> str:
    return next(line for line in out.splitlines() if text in line)


def test_a_step_waiting_for_a_signal_says_so_and_the_shell_answers_it(
    legato: Invoke, db_url: str, flows: ModuleType
) -> None:
    with Client(db_url) as client:
        run_id = client.start(flows.approval)
        drive_until(client, run_id, lambda r: r.steps["approve"].status is StepStatus.SUSPENDED)

        shown = legato("runs", "show", run_id, "--url", db_url)
        assert shown.exit_code == 0, shown.output
        approve = line_of(shown.stdout, "approve")
        assert "suspended" in approve
        assert "wait_for_signal" in approve
        assert "waits for signal 'approval' (times out at" in approve
        assert "completed" in line_of(shown.stdout, "flows.extract")

        sent = legato(
            "runs", "signal", run_id[:10], "approval", "--payload", '{"ok": true}',
            "--by", "ada", "--url", db_url,
        )  # fmt: skip
        assert sent.exit_code == 0, sent.output
        assert f"signal 'approval' completed step approve of run {run_id}" in sent.stdout
        drive_until(client, run_id, lambda r: r.finished)
        run = client.get(run_id)
        assert run.status is RunStatus.COMPLETED
        assert run.outputs == {"answer": {"answer": {"ok": True}}}
        received = [e for e in client.history(run_id) if e.type == "signal.received"]
        assert [e.actor for e in received] == ["ada"]

    again = legato("runs", "signal", run_id, "approval", "--url", db_url)
    assert again.exit_code == 2
    assert f"run {run_id} is completed: a signal can no longer reach it" in again.output
    assert "Traceback" not in again.output


def test_a_signal_payload_that_is_not_json_is_refused(legato: Invoke, db_url: str) -> None:
    with Client(db_url):
        pass
    result = legato("runs", "signal", "0" * 32, "approval", "--payload", "{oops", "--url", db_url)
    assert_usage_error(result, "--payload")


def test_a_map_shows_its_item_count_and_keeps_the_failed_items(legato: Invoke, db_url: str) -> None:
    numbers = json.dumps(list(range(30)))
    ran = legato("run", target("halves"), "-p", f"numbers={numbers}", "--url", db_url)
    assert ran.exit_code == 0, ran.output
    with Client(db_url) as client:
        (run,) = client.list_runs(limit=1)
    shown = legato("runs", "show", run.id, "--url", db_url)
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "1 step: 1 completed  (30 items)" in line_of(out, "steps")
    assert "map · 30 items, 15 failed" in line_of(out, "halve ")
    assert "ValueError: 1 is odd" in line_of(out, "halve[1] ")
    table = "\n".join(line for line in out.splitlines() if line.startswith("│"))
    listed = [i for i in range(30) if f"halve[{i}] " in table]
    assert len(listed) == 10
    assert sum(1 for i in listed if i % 2) > len(listed) // 2  # the failed ones come first
    hidden_failed = 15 - sum(1 for i in listed if i % 2)
    counted = line_of(out, "more items")
    assert f"… 20 more items ({20 - hidden_failed} completed, {hidden_failed} failed)" in counted
    for odd in range(1, 30, 2):  # every failed attempt is listed below the table
        assert f"halve[{odd}] attempt 1 (" in out

    everything = legato("runs", "show", run.id, "--all", "--url", db_url)
    assert all(f"halve[{i}]" in everything.stdout for i in range(30))


def test_a_loop_shows_each_iteration_and_its_steps(legato: Invoke, db_url: str) -> None:
    ran = legato("run", target("counting"), "--url", db_url)
    assert ran.exit_code == 0, ran.output
    with Client(db_url) as client:
        (run,) = client.list_runs(limit=1)
    out = legato("runs", "show", run.id, "--url", db_url).stdout
    assert "loop · 3 iterations" in line_of(out, "count ")
    for i in range(3):
        assert "iteration" in line_of(out, f"count[{i}] ")
        assert "flows.echo" in line_of(out, f"count[{i}].tick")
    assert "count[3]" not in out


def test_a_group_shows_its_steps_inside_it(legato: Invoke, db_url: str) -> None:
    ran = legato("run", target("grouped"), "--url", db_url)
    assert ran.exit_code == 0, ran.output
    with Client(db_url) as client:
        (run,) = client.list_runs(limit=1)
    out = legato("runs", "show", run.id, "--url", db_url).stdout
    assert "4 steps: 4 completed" in line_of(out, "steps")
    group = line_of(out, "job ")
    assert "group · 2 steps" in group and "completed" in group
    rows = [line for line in out.splitlines() if line.startswith("│")]
    names = [row.split("│")[1] for row in rows]
    at = {name.strip(): name for name in names}
    assert list(at)[:4] == ["job", "load", "save", "report"]  # a group, then its steps
    indent = {step: len(name) - len(name.lstrip()) for step, name in at.items()}
    assert indent["load"] == indent["save"] > indent["job"] == indent["report"]


def test_a_sub_workflow_step_names_its_child_run(legato: Invoke, db_url: str) -> None:
    ran = legato("run", target("parent"), "--url", db_url)
    assert ran.exit_code == 0, ran.output
    with Client(db_url) as client:
        runs = {r.workflow: r for r in client.list_runs(limit=5)}
        child = runs["cli_etl"]
        parent = runs["cli_parent"]
        assert child.parent_run_id == parent.id
    out = legato("runs", "show", parent.id, "--url", db_url).stdout
    call = line_of(out, "call")
    assert "sub_workflow" in call
    assert f"child run {child.id}" in call
    child_out = legato("runs", "show", child.id, "--url", db_url).stdout
    assert parent.id in child_out


def test_cancel_from_the_shell_ends_the_run_and_its_waits(
    legato: Invoke, db_url: str, flows: ModuleType
) -> None:
    with Client(db_url) as client:
        run_id = client.start(flows.approval)
        drive_until(client, run_id, lambda r: r.steps["approve"].status is StepStatus.SUSPENDED)
        result = legato("runs", "cancel", run_id, "--reason", "not needed", "--url", db_url)
        assert result.exit_code == 0, result.output
        assert f"run {run_id} cancelled: not needed" in result.stdout
        run = client.get(run_id)
        assert run.status is RunStatus.CANCELLED
        assert run.error is not None and run.error.message == "not needed"
        assert run.steps["approve"].status is StepStatus.CANCELLED
        assert run.steps["ship"].status is StepStatus.CANCELLED
    twice = legato("runs", "cancel", run_id, "--url", db_url)
    assert twice.exit_code == 2
    assert (
        f"run {run_id} is cancelled: only a pending, running or paused run can be cancelled"
        in twice.output
    )
