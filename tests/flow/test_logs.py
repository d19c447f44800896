"""Task log capture on each backend: what a task logs and prints during an attempt is
kept with that attempt, bounded, masked, and written with the worker's own writes."""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from legato import Client, LogLine, ParamError, RunNotFoundError, RunStatus, Worker, Workflow
from store.helpers import count, drive

from .tasks_logs import (
    chatty,
    chatty_async,
    gate,
    interleaved,
    interleaved_async,
    many_lines,
    prints_lines,
    tells_secret,
    waits_after_logging,
)
from .test_context import counting_commits


def run_to_end(client: Client, wf: Workflow, **worker_args: Any) -> str:
    run_id = client.start(wf)
    worker = Worker(client, worker_id="w1", **worker_args)
    try:
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED, run.error
    return run_id


def messages(lines: list[LogLine]) -> list[tuple[str, str | None, str]]:
    return [(line.level, line.logger, line.message) for line in lines]


def poll(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"not true within {timeout}s")


def test_logging_and_prints_of_sync_and_async_tasks_are_kept_by_attempt(client: Client) -> None:
    wf = Workflow("chatty")
    wf.step("sync", chatty, name="a")
    wf.step("async", chatty_async, name="b")
    run_id = run_to_end(client, wf)

    sync = client.logs(run_id, "sync")
    assert [(m[0], m[1], m[2].splitlines()[0]) for m in messages(sync)] == [
        ("INFO", "legato.task.flow_logs.chatty", "hello from a"),
        ("WARNING", "flow_logs.module", "module logger says a"),
        ("stdout", None, "printed by a"),
        ("stderr", None, "to stderr a"),
        ("ERROR", "legato.task.flow_logs.chatty", "it failed"),
        ("stdout", None, "no newline at the end"),  # kept when the attempt ended
    ]
    failed = sync[4].message
    assert "Traceback (most recent call last)" in failed and "ValueError: bad a" in failed
    assert [line.seq for line in sync] == [1, 2, 3, 4, 5, 6]
    assert {(line.run_id, line.step_id, line.attempt) for line in sync} == {(run_id, "sync", 1)}
    assert all(line.at.tzinfo is not None for line in sync)
    assert not any(line.printed for line in sync[:2]) and sync[2].printed

    assert messages(client.logs(run_id, "async")) == [
        ("INFO", "legato.task.flow_logs.chatty_async", "hello from b"),
        ("stdout", None, "printed by b"),
        ("WARNING", "flow_logs.module", "module logger says b"),
    ]
    every = client.logs(run_id)
    assert len(every) == 9 and [line.id for line in every] == sorted(line.id for line in every)
    # paging by the id of the last line read
    first = client.logs(run_id, limit=4)
    rest = client.logs(run_id, after=first[-1].id)
    assert first + rest == every
    assert client.logs(run_id, "sync", attempt=2) == []


def test_two_tasks_running_at_once_keep_their_own_lines(client: Client) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("side_by_side")
    wf.step("left", interleaved, name="left", n=30, barrier_key=key)
    wf.step("right", interleaved, name="right", n=30, barrier_key=key)
    wf.step("up", interleaved_async, name="up", n=30)
    wf.step("down", interleaved_async, name="down", n=30)
    run_id = run_to_end(client, wf, concurrency=4)
    for name in ("left", "right", "up", "down"):
        lines = client.logs(run_id, name)
        assert len(lines) == 60
        assert all(line.message.startswith(f"{name} ") for line in lines), name
        assert [line.seq for line in lines] == list(range(1, 61))


def test_a_running_attempts_lines_are_written_by_the_heartbeat(client: Client) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("long_task")
    wf.step("slow", waits_after_logging, key=key)
    run_id = client.start(wf)
    # a 30s lease renews every 10s: lines waiting come earlier, within about a second
    worker = Worker(client, worker_id="w1", lease=30.0)
    thread = threading.Thread(target=worker.run, kwargs={"until": lambda _: gate(key).is_set()})
    thread.start()
    try:
        began = time.monotonic()
        early = poll(lambda: client.logs(run_id, "slow"))
        assert time.monotonic() - began < 5
        assert [line.message for line in early] == [f"early line of {key}"]
        assert client.get(run_id).steps["slow"].status.value == "running"
    finally:
        gate(key).set()
        thread.join(timeout=10)
        worker.close()
    worker = Worker(client, worker_id="w2")
    try:
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED


def test_a_long_log_is_cut_at_its_bound_and_says_so(client: Client) -> None:
    wf = Workflow("bounded")
    wf.step("logs", many_lines, n=20)
    wf.step("prints", prints_lines, n=20)
    run_id = run_to_end(client, wf, log_lines=5)
    for step in ("logs", "prints"):
        lines = client.logs(run_id, step)
        assert len(lines) == 6
        assert lines[-1].level == "WARNING"
        assert lines[-1].message.startswith("... 15 lines dropped: this attempt's log passed")
    # the bytes bound too: each line "printed N" is about 20 bytes here
    wf = Workflow("bounded_bytes")
    wf.step("prints", prints_lines, n=100)
    run_id = run_to_end(client, wf, log_bytes=200)
    lines = client.logs(run_id, "prints")
    assert 5 <= len(lines) < 15 and "lines dropped" in lines[-1].message


def test_capture_can_be_turned_off(client: Client) -> None:
    wf = Workflow("silent")
    wf.step("logs", many_lines, n=3)
    run_id = run_to_end(client, wf, log_lines=0)
    assert client.logs(run_id) == []


def test_secrets_a_task_writes_are_masked(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "tok-" + uuid.uuid4().hex
    monkeypatch.setenv("LEGATO_SECRETS", "API_*")
    monkeypatch.setenv("API_TOKEN", token)
    wf = Workflow("masked")
    wf.step("call", tells_secret, token="${{ secrets.API_TOKEN }}")
    with Client(db_url) as client:
        run_id = run_to_end(client, wf)
        assert [line.message for line in client.logs(run_id)] == [
            "calling with token ***",
            "header: Bearer ***",
        ]
        assert count(client.store, "step_logs", "WHERE message LIKE ?", f"%{token}%") == 0


def test_many_lines_cost_no_extra_commits(client: Client) -> None:
    wf = Workflow("loud")
    wf.step("count", many_lines, n=10_000)
    run_id = client.start(wf)
    worker = Worker(client, worker_id="w1", concurrency=1)
    try:
        with counting_commits(client) as commits:
            run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED
    assert commits[0] < 50  # a claim and a report, some idle ticks: nothing per line
    assert len(client.logs(run_id, limit=10_000)) == 10_000


def test_prune_deletes_a_runs_lines(client: Client) -> None:
    wf = Workflow("pruned")
    wf.step("logs", many_lines, n=3)
    old = run_to_end(client, wf)
    client.store.clock.advance(3600)  # type: ignore[attr-defined]
    recent = run_to_end(client, wf)
    assert count(client.store, "step_logs") == 6
    assert client.prune(older_than="30m").runs == 1
    assert count(client.store, "step_logs") == 3
    with pytest.raises(RunNotFoundError):
        client.logs(old)
    assert len(client.logs(recent)) == 3


def test_unknown_runs_and_steps_are_clear_errors(client: Client) -> None:
    wf = Workflow("small")
    wf.step("logs", many_lines, n=1)
    run_id = run_to_end(client, wf)
    with pytest.raises(ParamError, match=r"has no step 'nope'"):
        client.logs(run_id, "nope")
    with pytest.raises(RunNotFoundError):
        client.logs(str(uuid.uuid4()))
    with pytest.raises(ParamError, match="attempt must be"):
        client.logs(run_id, attempt=0)
    with pytest.raises(ParamError, match="limit must be"):
        client.logs(run_id, limit=0)


def test_the_workers_own_output_and_the_tasks_warnings_still_show(
    client: Client, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("shown")
    wf.step("slow", waits_after_logging, key=key)
    wf.step("chatty", chatty, name="c")
    run_id = client.start(wf)
    worker = Worker(client, worker_id="w1", concurrency=2)
    try:
        poll(lambda: worker.tick().claimed or worker._running)
        poll(lambda: (worker.tick(), client.logs(run_id, "slow"))[1])
        print("the worker's own line")
        print("the worker's own error", file=sys.stderr)
        logging.getLogger("legato.worker").warning("the worker's own record")
        gate(key).set()
        run = drive(client, run_id, worker)
    finally:
        worker.close()
    assert run.status is RunStatus.COMPLETED
    out, err = capsys.readouterr()
    assert "the worker's own line" in out and "printed by c" in out
    assert "the worker's own error" in err
    every = " ".join(line.message for line in client.logs(run_id))
    assert "the worker's own" not in every
    shown = [r.getMessage() for r in caplog.records]
    assert "the worker's own record" in shown and "module logger says c" in shown
    assert "it failed" in shown  # ctx.logger's error reaches the handlers as before


def test_a_print_passing_through_two_streams_is_kept_once() -> None:
    """A live display (``legato run``) stands between a print and the terminal: what it
    passes on to another captured stream is not kept again."""
    from legato.worker.capture import AttemptLog, LogLimits, capturing, install

    class Relay:  # writes what it gets to sys.stderr, as rich's live display does
        def write(self, text: str) -> int:
            return sys.stderr.write(text)

        def flush(self) -> None:
            pass

    log = AttemptLog(1, 1, LogLimits())
    saved = sys.stdout, sys.stderr
    try:
        install()
        sys.stdout = Relay()  # type: ignore[assignment]
        install()
        with capturing(log):
            print("once")
        log.close()
    finally:
        sys.stdout, sys.stderr = saved
    assert [(line.level, line.message) for line in log.take()] == [("stdout", "once")]


def test_a_secret_printed_in_pieces_is_masked_whole() -> None:
    from legato.worker.capture import AttemptLog, LogLimits

    log = AttemptLog(7, 2, LogLimits(), hidden=("s3cret-value",))
    log.write("stdout", "token: s3cret")
    log.write("stdout", "-value and more\nnext s3cret-value\n")
    log.add("INFO", "x", "s3cret-value in a record")
    log.close()
    assert [line.message for line in log.take()] == [
        "token: *** and more",
        "next ***",
        "*** in a record",
    ]


def test_a_task_loggers_own_level_still_decides_what_the_handlers_see(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="legato.task.flow_logs.many_lines")
    wf = Workflow("own_level")
    wf.step("logs", many_lines, n=2)
    run_id = run_to_end(client, wf)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("legato.task")] == [
        "line 0",
        "line 1",
    ]
    assert len(client.logs(run_id)) == 2
