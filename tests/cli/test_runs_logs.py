"""``legato runs logs`` and ``legato runs watch``: a run's lines for people and scripts,
followed live, and the run watched until it ends."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from legato import Client

from .helpers import Invoke, assert_usage_error, stored_runs, target


def poll(check: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")


def test_logs_prints_a_finished_runs_lines_and_json_lines(legato: Invoke, db_url: str) -> None:
    assert legato("run", target("printing"), "--url", db_url).exit_code == 0
    [run] = stored_runs(db_url)
    result = legato("runs", "logs", run.id[:8], "--url", db_url)
    assert result.exit_code == 0, result.output
    assert "chatty#1 stdout: a task printing to stdout" in result.stdout
    as_json = legato("runs", "logs", run.id, "chatty", "--json", "--url", db_url)
    assert as_json.exit_code == 0, as_json.output
    [line] = [json.loads(text) for text in as_json.stdout.splitlines()]
    assert line["run_id"] == run.id and line["step_id"] == "chatty"
    assert (line["attempt"], line["level"], line["logger"]) == (1, "stdout", None)
    assert line["message"] == "a task printing to stdout"
    other = legato("runs", "logs", run.id, "chatty", "--attempt", "2", "--url", db_url)
    assert other.exit_code == 0 and other.stdout == ""
    assert f"step chatty of run {run.id} has no log lines" in other.stderr


def test_logs_names_an_unknown_step_or_run(legato: Invoke, db_url: str) -> None:
    assert legato("run", target("printing"), "--url", db_url).exit_code == 0
    [run] = stored_runs(db_url)
    assert_usage_error(
        legato("runs", "logs", run.id, "nope", "--url", db_url), "has no step 'nope'"
    )
    assert_usage_error(
        legato("runs", "logs", "0000000000", "--url", db_url), "no run has an id starting with"
    )


def test_follow_and_watch_of_a_finished_failed_run_end_at_once_with_exit_1(
    legato: Invoke, db_url: str
) -> None:
    assert legato("run", target("failing"), "--url", db_url).exit_code == 1
    [run] = stored_runs(db_url)
    followed = legato("runs", "logs", run.id, "--follow", "--url", db_url)
    assert followed.exit_code == 1
    assert f"run {run.id} failed: ValueError" in followed.stderr
    watched = legato("runs", "watch", run.id, "--url", db_url)
    assert watched.exit_code == 1, watched.output
    assert "explode" in watched.stdout and "failed" in watched.stdout


def test_follow_and_watch_show_a_running_run_until_it_ends(
    spawn: Callable[..., subprocess.Popen[str]], db_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    runner = spawn("legato", "run", target("talking"), "-p", f"path={gate}", "--url", db_url)

    def started() -> str | None:
        if runner.poll() is not None:
            raise AssertionError(runner.communicate())
        with Client(db_url) as client:
            runs = client.list_runs()
            return runs[0].id if runs else None

    run_id = str(poll(started))
    follower = spawn(
        "legato", "runs", "logs", run_id[:8], "-f", "--interval", "0.1", "--url", db_url
    )
    watcher = spawn("legato", "runs", "watch", run_id, "--interval", "0.1", "--url", db_url)
    seen: list[str] = []
    assert follower.stdout is not None
    reader = threading.Thread(target=lambda: seen.extend(follower.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    # the lines of the running step arrive while it runs (written by a heartbeat)
    warned = "talk#1 WARNING legato.task.flows.talks_until: waiting for gate"
    poll(lambda: any(warned in line for line in seen))
    assert any("talk#1 stdout: before the gate" in line for line in seen)
    assert runner.poll() is None
    gate.touch()

    assert follower.wait(timeout=30) == 0
    reader.join(timeout=10)
    assert any("after the gate" in line for line in seen)
    assert "completed" in follower.stderr.read()  # type: ignore[union-attr]
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert "talk" in out and "completed" in out and "after the gate" in out
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 0, err
    # the process that ran the worker kept its own output: the run's outputs, on stdout
    assert json.loads(out) == {"said": "talked"}


def test_the_watch_view_shows_steps_progress_and_latest_lines(db_url: str) -> None:
    from rich.console import Console

    from legato import Workflow
    from legato.cli.logs import RunWatch
    from legato.payload import dumps
    from legato.store.base import LogEntry, ProgressReport
    from store.helpers import claim
    from store.tasks import echo

    wf = Workflow("watched")
    wf.step("load", echo, x=1)
    with Client(db_url) as client:
        run_id = client.start(wf)
        [step] = claim(client, tasks=("store_suite.echo",))
        progress = dumps({"done": 25, "total": 100, "message": "rows", "at": 1.0})
        lines = [
            LogEntry(step.step_run_id, step.attempt, i, time.time(), "INFO", "etl", f"row {i}")
            for i in range(1, 6)
        ]
        client.store.extend_leases(
            "w1",
            [step.step_run_id],
            30,
            progress={step.step_run_id: ProgressReport(progress)},
            logs=lines,
        )
        view = RunWatch(run_id, lines=3)
        view.update(client.get(run_id))
        for line in client.logs(run_id):
            view.add(line)
    console = Console(record=True, width=160, force_terminal=False)
    console.print(view)
    text = console.export_text()
    assert "watched@" in text and run_id in text
    assert "load" in text and "running" in text and "0/1 steps" in text
    assert "25% (25/100) rows" in text
    assert "load#1 INFO etl: row 5" in text and "row 3" in text and "row 2" not in text


def test_legato_run_keeps_a_tasks_info_lines_while_its_console_shows_warnings(
    run_cli: Callable[..., subprocess.CompletedProcess[str]], legato: Invoke, sqlite_url: str
) -> None:
    done = run_cli("run", target("printing"), "--url", sqlite_url)
    assert done.returncode == 0, done.stderr
    assert "an INFO line" not in done.stderr  # the console shows warnings only
    [run] = stored_runs(sqlite_url)
    shown = legato("runs", "logs", run.id, "chatty", "--json", "--url", sqlite_url)
    kept = [(line["level"], line["logger"], line["message"]) for line in map(
        json.loads, shown.stdout.splitlines()
    )]  # fmt: skip
    assert kept == [
        ("stdout", None, "a task printing to stdout"),
        ("INFO", "cli.chatty", "an INFO line from hello"),
    ]
