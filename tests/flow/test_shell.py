"""``legato.shell`` end to end on each backend: run where the worker allows it, refused
(the step fails, saying how to allow it) where it does not."""

from __future__ import annotations

import pytest

import legato
from legato import RunStatus, StepStatus, Workflow


def scripts() -> Workflow:
    wf = Workflow("scripts")
    wf.param("who", default="world")
    greet = wf.shell("greet", 'echo "hello $WHO"', env={"WHO": "${{ params.who }}"})
    wf.shell(
        "shout",
        'echo "$TEXT" | tr a-z A-Z; echo done >&2',
        env={"TEXT": "${{ steps.greet.output.stdout | trim }}"},
        needs=[greet],
    )
    wf.shell("broken", "echo about to fail >&2; exit 4", continue_on_error=True)
    wf.shell("slow", "sleep 30", timeout=0.3, continue_on_error=True)
    wf.outputs(loud="${{ steps.shout.output.stdout | trim }}")
    return wf


def test_shell_steps_run_where_the_worker_allows_them(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGATO_ALLOW_SHELL", "1")
    run = legato.run(scripts(), {"who": "ada"}, url=db_url, timeout=30)

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.outputs == {"loud": "HELLO ADA"}
    assert run.steps["greet"].output == {"returncode": 0, "stdout": "hello ada\n", "stderr": ""}
    assert run.steps["greet"].inputs == {"script": 'echo "hello $WHO"', "env": {"WHO": "ada"}}
    assert run.steps["shout"].output == {
        "returncode": 0,
        "stdout": "HELLO ADA\n",
        "stderr": "done\n",
    }
    broken = run.steps["broken"]
    assert broken.status is StepStatus.FAILED and broken.error is not None
    assert (broken.error.type, broken.error.message) == (
        "ShellError",
        "bash script exited with code 4; stderr ends:\nabout to fail",
    )
    slow = run.steps["slow"]
    assert slow.status is StepStatus.FAILED and slow.error is not None
    assert slow.error.type == "StepTimeoutError"


def test_shell_steps_are_refused_where_the_worker_does_not_allow_them(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEGATO_ALLOW_SHELL", raising=False)
    wf = Workflow("refused")
    wf.shell("greet", "echo hello")
    run = legato.run(wf, url=db_url, timeout=30)

    assert run.status is RunStatus.FAILED
    step = run.steps["greet"]
    assert step.status is StepStatus.FAILED and step.error is not None
    assert (step.error.type, step.error.message) == (
        "ConfigError",
        "shell steps are off in this worker: start it with LEGATO_ALLOW_SHELL=1 in its "
        "environment to let it run scripts",
    )
    assert step.output is None
