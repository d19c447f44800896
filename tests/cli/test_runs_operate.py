"""``legato runs pause|resume|retry|rerun|restart|skip`` and the ``--all`` forms."""

from __future__ import annotations

import json

from legato import Client, RunStatus, StepStatus, Workflow
from store.helpers import claim, failed, ok, report

from .helpers import Invoke

TASKS = ("store_suite.echo",)


def chain(name: str = "ops_chain") -> Workflow:
    from store.tasks import echo

    wf = Workflow(name)
    a = wf.step("a", echo, x=1)
    wf.step("b", echo, x=a.output)
    return wf


def failed_run(client: Client, name: str = "ops_chain") -> str:
    run_id = client.start(chain(name))
    [a] = claim(client, tasks=TASKS)
    report(client, [failed(a, retryable=False)])
    return run_id


def test_pause_resume_and_show_from_the_shell(legato: Invoke, db_url: str) -> None:
    with Client(db_url) as client:
        run_id = client.start(chain())
        [a] = claim(client, tasks=TASKS)
        from legato.payload import dumps
        from legato.store.base import ProgressReport

        client.store.extend_leases(
            "w1",
            [a.step_run_id],
            30,
            progress={
                a.step_run_id: ProgressReport(
                    dumps({"done": 25, "total": 100, "message": "rows", "at": 1.0})
                )
            },
        )
        paused = legato("runs", "pause", run_id[:13], "--by", "ada", "--url", db_url)
        assert paused.exit_code == 0, paused.output
        assert f"run {run_id} paused" in paused.stdout
        shown = legato("runs", "show", run_id, "--url", db_url).stdout
        assert "paused" in shown
        assert "25% (25/100) rows" in shown  # the running step's latest progress
        assert "0/2 steps" in shown
        again = legato("runs", "pause", run_id, "--url", db_url)
        assert again.exit_code == 2
        assert f"run {run_id} is paused: only a pending or running run can be paused" in (
            again.output
        )
        resumed = legato("runs", "resume", run_id, "--json", "--url", db_url)
        assert json.loads(resumed.stdout) == {"run_id": run_id, "status": "resumed"}
        assert client.get(run_id).status is RunStatus.RUNNING
        events = [(e.type, e.actor) for e in client.history(run_id)]
        assert ("run.paused", "ada") in events


def test_retry_rerun_restart_and_skip_from_the_shell(legato: Invoke, db_url: str) -> None:
    with Client(db_url) as client:
        run_id = failed_run(client)
        retried = legato("runs", "retry", run_id, "--url", db_url)
        assert retried.exit_code == 0, retried.output
        assert f"run {run_id} retried: a, b run again" in retried.stdout
        [a] = claim(client, tasks=TASKS)
        report(client, [ok(a, 1)])
        skipped = legato("runs", "skip", run_id, "b", "--output", '"given"', "--url", db_url)
        assert skipped.exit_code == 0, skipped.output
        run = client.get(run_id)
        assert run.status is RunStatus.COMPLETED and run.steps["b"].output == "given"
        rerun = legato("runs", "rerun", run_id, "--from", "b", "--json", "--url", db_url)
        assert json.loads(rerun.stdout)["steps"] == ["b"]
        [b] = claim(client, tasks=TASKS)
        report(client, [ok(b, 2)])
        unknown = legato("runs", "rerun", run_id, "--from", "zz", "--url", db_url)
        assert unknown.exit_code == 2 and "has no step 'zz'" in unknown.output
        restarted = legato("runs", "restart", run_id, "--url", db_url)
        assert f"run {run_id} restarted (attempt 4)" in restarted.stdout
        assert client.get(run_id).steps["a"].status is StepStatus.QUEUED
        bad = legato("runs", "skip", run_id, "b", "--output", "{nope", "--url", db_url)
        assert bad.exit_code == 2 and "--output is not JSON" in bad.output
        running = legato("runs", "rerun", run_id, "--from", "a", "--url", db_url)
        assert running.exit_code == 2
        assert "is running: only a completed, failed or cancelled run can be rerun" in (
            running.output
        )


def test_bulk_retry_asks_first_and_reports_refusals(legato: Invoke, db_url: str) -> None:
    with Client(db_url) as client:
        failed_ids = [failed_run(client, "bulk_cli") for _ in range(2)]
        running = client.start(chain("bulk_cli"))
    asked = legato("runs", "retry", "--all", "--workflow", "bulk_cli", "--url", db_url)
    assert asked.exit_code == 1 and "nothing done" in asked.output  # no answer: no
    assert "retry 3 run(s) matching workflow bulk_cli?" in asked.output
    done = legato(
        "runs", "retry", "--all", "--workflow", "bulk_cli", "--yes", "--json", "--url", db_url
    )
    assert done.exit_code == 1  # one was refused
    result = json.loads(done.stdout)
    assert sorted(result["changed"]) == sorted(failed_ids)
    assert result["refused"] == {
        running: f"run {running} is pending: only a failed or cancelled run can be retried"
    }
    cancelled = legato(
        "runs", "cancel", "--all", "-w", "bulk_cli", "-s", "running", "-y", "--url", db_url
    )
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancel: 2 run(s) changed, 0 refused" in cancelled.stdout
    both = legato("runs", "cancel", running, "--all", "--url", db_url)
    assert both.exit_code == 2 and "not both" in both.output
    neither = legato("runs", "retry", "--url", db_url)
    assert neither.exit_code == 2 and "give a RUN_ID, or --all" in neither.output


def test_vars_sets_text_and_json_and_prints_them(legato: Invoke, db_url: str) -> None:
    with Client(db_url) as client:
        run_id = client.start(chain())
        empty = legato("runs", "vars", run_id, "--url", db_url)
        assert empty.exit_code == 0, empty.output
        assert f"run {run_id} has no variables" in empty.stdout
        set_ = legato(
            "runs", "vars", run_id[:10], "color=blue", "limit:=5", "ids:=[1, 2]", "--by", "ada",
            "--url", db_url,
        )  # fmt: skip
        assert set_.exit_code == 0, set_.output
        assert set_.stdout.splitlines() == ['color = "blue"', "ids = [1, 2]", "limit = 5"]
        assert client.get(run_id).variables == {"color": "blue", "limit": 5, "ids": [1, 2]}
        assert ("run.variables", "ada") in [(e.type, e.actor) for e in client.history(run_id)]
        shown = legato("runs", "vars", run_id, "--json", "--url", db_url)
        assert json.loads(shown.stdout)["variables"] == {"color": "blue", "limit": 5, "ids": [1, 2]}
        bad = legato("runs", "vars", run_id, "limit:=five", "--url", db_url)
        assert bad.exit_code == 2
        assert "variable limit is not JSON" in bad.output
        assert "Traceback" not in bad.output
        assert legato("runs", "vars", run_id, "nothing", "--url", db_url).exit_code == 2
        assert client.get(run_id).variables == {"color": "blue", "limit": 5, "ids": [1, 2]}
        client.cancel(run_id, "done")
        ended = legato("runs", "vars", run_id, "x=1", "--url", db_url)
        assert ended.exit_code != 0 and "Traceback" not in ended.output
