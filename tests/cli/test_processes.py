"""The real ``legato`` executable in child processes: the README's command, workers, Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import ModuleType

import pytest

from legato import Client, RunStatus, StepStatus

from .helpers import FLOWS, legato_command, subprocess_env, target

EXAMPLE = Path(__file__).parents[2] / "examples" / "etl.py"
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_the_readme_command_runs_the_example_from_another_folder(
    run_cli: RunCli, tmp_path: Path
) -> None:
    result = run_cli("run", f"{EXAMPLE}:wf", "-p", "source=s3://bucket/data")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"count": 3}
    assert (tmp_path / "legato.db").exists()
    with Client(f"sqlite:///{tmp_path / 'legato.db'}") as client:
        [run] = client.list_runs()
        assert [s.task for s in client.get(run.id).steps.values()] == [
            "etl.extract",
            "etl.transform",
            "etl.load",
        ]


def test_the_example_runs_as_a_script(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "completed {'count': 3}"


def test_python_dash_m_legato_is_the_same_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "legato", "--version"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "legato 0.1.0"


def test_a_bad_target_in_a_real_process_is_one_line(run_cli: RunCli) -> None:
    result = run_cli("run", "missing.py:wf", "-p", "source=x")
    assert result.returncode == 2
    assert result.stderr == "error: missing.py: no such file\n"
    assert result.stdout == ""


def test_a_worker_runs_what_a_client_started(
    spawn: Callable[..., subprocess.Popen[str]], db_url: str, flows: ModuleType
) -> None:
    with Client(db_url) as client:
        run_id = client.start(flows.etl, {"source": "from-a-client"})
        worker = spawn("legato", "worker", "--import", str(FLOWS), "--url", db_url, "-c", "2")
        run = client.wait(run_id, timeout=60)
        assert run.status is RunStatus.COMPLETED, worker.stderr
        assert run.outputs == {"count": 3, "source": "from-a-client"}
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "flows.extract" in err  # the tasks it serves are logged
    assert "received SIGTERM" in err
    assert "Traceback" not in err


def test_a_worker_without_tasks_refuses_to_start(run_cli: RunCli, sqlite_url: str) -> None:
    result = run_cli("worker", "--url", sqlite_url)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no tasks are registered")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_worker_imports_legato_imports_and_reports_bad_ones(
    tmp_path: Path, sqlite_url: str
) -> None:
    (tmp_path / "broken_tasks.py").write_text("import legato\n\n1/0\n")
    for imports, expected in [
        ("no_such_tasks_module", "error: no module named 'no_such_tasks_module'"),
        (f"{FLOWS}, broken_tasks.py", "error: broken_tasks.py, line 3: ZeroDivisionError"),
    ]:
        result = subprocess.run(
            [*legato_command(), "worker", "--url", sqlite_url],
            cwd=tmp_path,
            env={**subprocess_env(), "LEGATO_IMPORTS": imports},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert result.stderr.startswith(expected), result.stderr
        assert "Traceback" not in result.stderr


def test_a_worker_refuses_two_files_with_one_module_name(run_cli: RunCli, tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same_tasks.py").write_text("import legato\n")
    result = run_cli("worker", "-i", "one/same_tasks.py", "-i", "two/same_tasks.py")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: two/same_tasks.py would be imported as module 'same_tasks'"
    )


def test_ctrl_c_leaves_the_run_for_a_worker_to_finish(
    spawn: Callable[..., subprocess.Popen[str]], sqlite_url: str
) -> None:
    running = spawn("legato", "run", target("slow"), "-p", "seconds=1", "--url", sqlite_url)
    with Client(sqlite_url) as client:
        run_id = _wait_for(lambda: _running_step(client, "first"), running)
        running.send_signal(signal.SIGINT)
        state = _signal_state(running.pid)
        _, err = running.communicate(timeout=60)
        assert running.returncode == 130, err + state
        assert f"run {run_id} is left in the database (running, 1/2 steps done)" in err
        assert "Traceback" not in err
        run = client.get(run_id)
        assert run.steps["first"].status is StepStatus.COMPLETED  # allowed to finish
        assert run.steps["second"].status is StepStatus.QUEUED

        # The command it printed carries the run on.
        hint = re.search(r"^\s+(legato worker .*)$", err, re.MULTILINE)
        assert hint is not None, err
        args = shlex.split(hint.group(1))
        assert args[:3] == ["legato", "worker", "--import"]
        spawn(*args)
        finished = client.wait(run_id, timeout=60)
        assert finished.status is RunStatus.COMPLETED
        assert finished.outputs == {"total": 2.0}


def test_timeout_exits_124_at_once_and_the_hint_carries_the_run_on(
    run_cli: RunCli, spawn: Callable[..., subprocess.Popen[str]], sqlite_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "open"
    began = time.monotonic()
    result = run_cli(
        "run", target("gated"), "-p", f"path={gate}", "--timeout", "0.5", "--url", sqlite_url
    )
    assert result.returncode == 124, result.stderr
    assert time.monotonic() - began < 20  # its step runs on, for ever: it must not hold the exit
    assert "still running after 0.5s" in result.stderr
    with Client(sqlite_url) as client:
        [run] = client.list_runs()
        assert not run.finished
        first = client.get(run.id).steps["first"]
        # Handed back at once, not left to its 30 s lease: queued, neither failed nor lost.
        assert (first.status, first.lost, first.failures) == ("queued", 0, 0)
        assert [a.status for a in first.attempts] == ["released"]
        gate.touch()
        began = time.monotonic()
        spawn(*_hint(result.stderr))
        finished = client.wait(run.id, timeout=60)
        assert time.monotonic() - began < 25  # far less than the lease it no longer waits for
    assert finished.status is RunStatus.COMPLETED
    assert finished.outputs == {"first": "there", "second": 0.01}
    assert [a.status for a in finished.steps["first"].attempts] == ["released", "completed"]


def test_a_step_moved_to_another_queue_runs_here_and_in_the_hint(
    run_cli: RunCli, spawn: Callable[..., subprocess.Popen[str]], sqlite_url: str
) -> None:
    done = run_cli("run", target("moved"), "--url", sqlite_url, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"slept": 0.01}
    stopped = run_cli(
        "run", target("moved"), "-p", "seconds=3", "--timeout", "0.5", "--url", sqlite_url
    )
    assert stopped.returncode == 124, stopped.stderr
    hint = _hint(stopped.stderr)
    assert hint[-4:] == ["--queue", "default", "--queue", "io"]
    spawn(*hint)
    with Client(sqlite_url) as client:
        run_id = client.list_runs(status="running")[0].id
        assert client.wait(run_id, timeout=60).outputs == {"slept": 3.0}


def _hint(stderr: str) -> list[str]:
    """The ``legato worker ...`` command a stopped run printed."""
    found = re.search(r"^\s+(legato worker .*)$", stderr, re.MULTILINE)
    assert found is not None, stderr
    args = shlex.split(found.group(1))
    assert args[:3] == ["legato", "worker", "--import"]
    return args


def test_a_second_ctrl_c_quits_at_once_and_hands_the_step_back(
    spawn: Callable[..., subprocess.Popen[str]], sqlite_url: str
) -> None:
    running = spawn("legato", "run", target("slow"), "-p", "seconds=30", "--url", sqlite_url)
    with Client(sqlite_url) as client:
        run_id = _wait_for(lambda: _running_step(client, "first"), running)
        began = time.monotonic()
        running.send_signal(signal.SIGINT)
        _wait_for(lambda: _stderr_has(running, "letting running steps finish"), running)
        running.send_signal(signal.SIGINT)
        _, err = running.communicate(timeout=20)
        assert running.returncode == 130, err
        assert time.monotonic() - began < 20
        assert f"run {run_id} is left in the database (running, 0/2 steps done)" in err
        first = client.get(run_id).steps["first"]
        assert (first.status, [a.status for a in first.attempts]) == ("queued", ["released"])
        assert "legato worker --import" in err


def test_ctrl_c_in_legato_run_from_python_raises_after_handing_back(
    spawn: Callable[..., subprocess.Popen[str]], sqlite_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "embedded.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(FLOWS.parent)!r})\n"
        "import legato, flows\n"
        "try:\n"
        f"    run = legato.run(flows.slow, {{'seconds': 2}}, url={sqlite_url!r})\n"
        "    print('returned', run.status)\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt')\n"
    )
    running = spawn(sys.executable, str(script))
    with Client(sqlite_url) as client:
        run_id = _wait_for(lambda: _running_step(client, "first"), running)
        running.send_signal(signal.SIGINT)
        out, err = running.communicate(timeout=20)
        assert running.returncode == 0, err
        assert out.strip() == "KeyboardInterrupt"  # never a run returned as if finished
        first = client.get(run_id).steps["first"]
        assert (first.status, [a.status for a in first.attempts]) == ("queued", ["released"])
        spawn("legato", "worker", "--import", str(FLOWS), "--url", sqlite_url)
        assert client.wait(run_id, timeout=60).outputs == {"total": 4.0}


def _running_step(client: Client, step_id: str) -> str | None:
    for listed in client.list_runs():
        step = client.get(listed.id).steps.get(step_id)
        if step is not None and step.status is StepStatus.RUNNING:
            return listed.id
    return None


def _wait_for(
    probe: Callable[[], str | None], proc: subprocess.Popen[str], timeout: float = 60
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the process ended first: {proc.communicate()}")
        time.sleep(0.02)
    pytest.fail(f"nothing after {timeout}s; {_signal_state(proc.pid)}")


def _signal_state(pid: int) -> str:
    """The process's signal masks per thread, to tell why a signal did nothing."""
    states = []
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with suppress(OSError):
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            keys = ("Name", "SigPnd", "SigBlk", "SigIgn")
            states.append(" ".join(f"{k}={fields.get(k, '?')}" for k in keys))
    shared = Path(f"/proc/{pid}/status")
    with suppress(OSError):
        states += [line for line in shared.read_text().splitlines() if line.startswith("ShdPnd")]
    return "\nsignals: " + "; ".join(states)


def _in_terminal(*args: str, cwd: Path, stdout_is_terminal: bool = True) -> tuple[int, str, str]:
    """Run ``legato`` with stderr (and stdout, unless told) on a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*legato_command(), *args],
        cwd=cwd,
        env={**subprocess_env(), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"},
        stdout=slave if stdout_is_terminal else subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    piped = proc.stdout.read() if proc.stdout else ""
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace"), piped


def test_a_terminal_gets_the_live_display_and_a_pipe_does_not(
    tmp_path: Path, sqlite_url: str
) -> None:
    run = ("run", target("slow"), "-p", "seconds=0.3", "--url", sqlite_url)
    code, screen, _ = _in_terminal(*run, cwd=tmp_path)
    assert code == 0, screen
    assert "━" in screen  # the progress bar
    assert "cli_slow@1" in screen
    assert "flows.nap" in screen  # the steps table
    assert '"total"' in screen  # then the outputs

    code, screen, _ = _in_terminal(*run, "--no-progress", cwd=tmp_path)
    assert code == 0, screen
    assert "━" not in screen
    assert "flows.nap" not in screen

    code, screen, piped = _in_terminal(*run, cwd=tmp_path, stdout_is_terminal=False)
    assert code == 0, screen
    assert "━" not in screen
    assert json.loads(piped) == {"total": 0.6}


def _stderr_has(proc: subprocess.Popen[str], text: str) -> str | None:
    """Read one line of the child's stderr: is it ``text``? (Lines read here are used up.)"""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    return line if text in line else None


#: a workflow file that also starts a run of itself when run as a script
NAMED_FLOW = """\
import sys

import legato


@legato.task
def greet(who: str) -> str:
    return f"hello {who}"


wf = legato.Workflow("any_file_name")
wf.outputs(greeting=wf.step("greet", greet, who=wf.param("who")).output)

if __name__ == "__main__":
    with legato.Client(sys.argv[1]) as client:
        print(client.start(wf, {"who": "a worker"}))
"""


@pytest.mark.parametrize("stem", ["01_etl", "my-flow"])
def test_legato_run_takes_a_file_of_any_name(
    run_cli: RunCli, tmp_path: Path, sqlite_url: str, stem: str
) -> None:
    (tmp_path / f"{stem}.py").write_text(NAMED_FLOW)
    result = run_cli("run", f"{stem}.py:wf", "-p", "who=you", "--url", sqlite_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"greeting": "hello you"}
    with Client(sqlite_url) as client:
        [run] = client.list_runs()
        assert client.get(run.id).steps["greet"].task == f"{stem}.greet"


@pytest.mark.parametrize("stem", ["01_etl", "my-flow"])
def test_a_worker_importing_a_script_finds_the_names_it_gave(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: Path, sqlite_url: str, stem: str
) -> None:
    (tmp_path / f"{stem}.py").write_text(NAMED_FLOW)
    started = subprocess.run(
        [sys.executable, f"{stem}.py", sqlite_url],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    worker = spawn("legato", "worker", "--import", f"{stem}.py", "--url", sqlite_url)
    with Client(sqlite_url) as client:
        run = client.wait(run_id, timeout=60)
        assert run.status is RunStatus.COMPLETED, run.error
        assert run.outputs == {"greeting": "hello a worker"}
        assert client.get(run_id).steps["greet"].task == f"{stem}.greet"
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err


STDIN_FLOW = """\
import legato


@legato.task
def double(n: int) -> int:
    return n * 2


wf = legato.Workflow("from_stdin")
wf.outputs(doubled=wf.step("double", double, n=wf.param("n", type="int")).output)
run = legato.run(wf, {"n": 21}, url=URL)
print(run.status.value, run.outputs, run.steps["double"].task)
"""


@pytest.mark.parametrize("how", ["stdin", "-c"])
def test_a_script_without_a_file_runs(tmp_path: Path, sqlite_url: str, how: str) -> None:
    source = f"URL = {sqlite_url!r}\n{STDIN_FLOW}"
    result = subprocess.run(
        [sys.executable, "-"] if how == "stdin" else [sys.executable, "-c", source],
        input=source if how == "stdin" else None,
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "completed {'doubled': 42} main.double"
