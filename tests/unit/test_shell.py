"""``legato.shell``: off unless allowed, scripts as one argument, bounded output, timeouts."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from legato import Client, Worker, Workflow
from legato.builtin.shell import MAX_STREAM_BYTES, run_shell
from legato.define.tasks import TaskRegistry, default_registry, task
from legato.errors import ConfigError, ShellError


@pytest.fixture
def allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_ALLOW_SHELL", "1")


def sh(script: str, **options: Any) -> dict[str, Any]:
    return asyncio.run(run_shell(script, **options))


def test_it_is_registered_by_default_under_its_name() -> None:
    task = default_registry.get("legato.shell")
    assert task.fn is run_shell and task.is_async
    assert task.retry.max_attempts == 1 and task.timeout is None


def test_it_refuses_to_run_unless_the_process_allows_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LEGATO_ALLOW_SHELL", raising=False)
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError) as info:
        sh(f"touch {marker}")
    assert str(info.value) == (
        "shell steps are off in this worker: start it with LEGATO_ALLOW_SHELL=1 in its "
        "environment to let it run scripts"
    )
    monkeypatch.setenv("LEGATO_ALLOW_SHELL", "0")
    with pytest.raises(ConfigError):
        sh(f"touch {marker}")
    assert not marker.exists()


@pytest.mark.usefixtures("allowed")
def test_output_streams_and_exit_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FROM_WORKER", "inherited")
    monkeypatch.setenv("DROPPED", "x")
    result = sh(
        'echo "$GREETING $FROM_WORKER ${DROPPED:-unset} $N $FLAG"; pwd; echo note >&2',
        env={"GREETING": "hello", "N": 3, "FLAG": True, "DROPPED": None},
        cwd=str(tmp_path),
    )
    assert result == {
        "returncode": 0,
        "stdout": f"hello inherited unset 3 true\n{tmp_path}\n",
        "stderr": "note\n",
    }
    assert sh("echo $0", shell="sh")["stdout"] == f"{shutil.which('sh')}\n"


@pytest.mark.usefixtures("allowed")
def test_values_passed_in_env_are_data_not_script() -> None:
    value = "$(echo injected); echo also-injected `id` ' \" \\"
    result = sh('printf "%s" "$VALUE"', env={"VALUE": value})
    assert result["stdout"] == value


@pytest.mark.usefixtures("allowed")
def test_a_non_zero_exit_fails_with_the_end_of_stderr() -> None:
    with pytest.raises(ShellError) as info:
        sh("echo starting; for i in $(seq 1 3000); do echo line $i >&2; done; exit 7")
    error = info.value
    assert error.returncode == 7
    assert error.stderr.endswith("line 2999\nline 3000\n")
    message = str(error)
    assert message.startswith("bash script exited with code 7; stderr ends:\n...")
    assert message.endswith("line 2999\nline 3000")
    assert len(message) < 2_100
    with pytest.raises(ShellError) as info:
        sh("exit 1")
    assert str(info.value) == "bash script exited with code 1"


@pytest.mark.usefixtures("allowed")
def test_output_is_bounded_keeping_its_end() -> None:
    result = sh("for i in $(seq 1 40000); do echo row $i; done")  # about 390 KB
    out = result["stdout"]
    total = sum(len(f"row {i}\n") for i in range(1, 40001))
    cut = total - MAX_STREAM_BYTES
    assert out.startswith(f"[... {cut:,} earlier bytes cut ...]\n")
    assert out.endswith("row 39999\nrow 40000\n")
    assert len(out.encode()) < MAX_STREAM_BYTES + 100


@pytest.mark.usefixtures("allowed")
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"shell": "no-such-shell"}, ConfigError, "shell 'no-such-shell' is not found on this"),
        ({"env": ["A=1"]}, TypeError, "env must be a mapping of names to values, got list"),
        ({"env": {"A": [1]}}, TypeError, "env A: a variable holds text or a number, got list"),
        ({"env": {"A=B": "1"}}, ValueError, "env: 'A=B' is not an environment variable name"),
        ({"cwd": "/no/such/dir"}, ValueError, "cwd '/no/such/dir' is not a directory"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        sh("echo never", **options)
    assert str(info.value).startswith(message)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.usefixtures("allowed")
def test_a_timeout_ends_the_script_and_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; wait"

    async def call() -> None:
        await asyncio.wait_for(run_shell(script), timeout=0.5)

    with pytest.raises(TimeoutError):
        asyncio.run(call())
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in started):
        assert time.monotonic() < deadline, [p for p in started if alive(p)]
        time.sleep(0.01)
    assert os.getpid() not in started


def test_the_builder_adds_a_shell_step_with_only_the_options_given(tmp_path: Path) -> None:
    wf = Workflow("built")
    first = wf.shell("first", "echo one")
    wf.shell(
        "second",
        "ls",
        env={"A": "${{ steps.first.output.stdout }}"},
        cwd="/tmp",
        shell="sh",
        needs=[first],
        timeout="5s",
    )
    steps = wf.spec.to_dict()["steps"]
    assert steps == [
        {"id": "first", "task": "legato.shell", "inputs": {"script": "echo one"}},
        {
            "id": "second",
            "needs": ["first"],
            "task": "legato.shell",
            "inputs": {
                "script": "ls",
                "env": {"A": "${{ steps.first.output.stdout }}"},
                "cwd": "/tmp",
                "shell": "sh",
            },
            "timeout": 5.0,
        },
    ]
    # legato's own task does not make a worker serve the default queue
    registry = TaskRegistry()

    @task(name="unit.shell.gpu", queue="gpu", registry=registry)
    def on_gpu() -> None: ...

    registry.add(default_registry.get("legato.shell"))
    with Client(f"sqlite:///{tmp_path / 'q.db'}") as client:
        worker = Worker(client, registry=registry)
        try:
            assert worker._claim_queues() == ("gpu",)
        finally:
            worker.close()
