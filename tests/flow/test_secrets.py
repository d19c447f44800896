"""``secrets.NAME`` end to end on each backend: the task gets the value, the database
never holds it, and a secret the worker does not lend fails its step, not the worker."""

from __future__ import annotations

import time
import uuid

import pytest

import legato
from legato import Client, Run, RunStatus, StepStatus, Worker, Workflow
from store.helpers import sql

from .tasks_secrets import digest, fails_once, plain, sign

TOKEN = "tok-" + uuid.uuid4().hex
PASSWORD = "pw-" + uuid.uuid4().hex


@pytest.fixture(autouse=True)
def _lent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_SECRETS", "API_*, DB_PASSWORD")
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("DB_PASSWORD", PASSWORD)
    monkeypatch.setenv("NOT_LENT", "not-lent-" + uuid.uuid4().hex)
    monkeypatch.delenv("API_UNSET", raising=False)


def stored_text(client: Client) -> str:
    """Every row the run left in the database, as text."""
    tables = ("workflow_specs", "runs", "step_runs", "events")
    return repr([sql(client.store, f"SELECT * FROM {table}") for table in tables])


def test_a_task_gets_its_secrets_and_the_stored_inputs_show_stars(db_url: str) -> None:
    wf = Workflow("with_secrets")
    wf.step(
        "call",
        sign,
        token="${{ secrets.API_TOKEN }}",
        header="Bearer ${{ secrets.API_TOKEN }}",
        prefix="${{ secrets.DB_PASSWORD | truncate(6, True, '') }}",
    )
    wf.map(
        "each",
        sign,
        over=["a", "b"],
        token="${{ secrets.DB_PASSWORD }}",
        header="${{ item }}:${{ secrets.API_TOKEN }}",
    )
    run = legato.run(wf, url=db_url, timeout=30)

    assert run.status is RunStatus.COMPLETED, run.error
    call = run.steps["call"]
    assert call.output == {
        "token": digest(TOKEN),
        "header": digest(f"Bearer {TOKEN}"),
        "prefix": digest(PASSWORD[:6]),
    }
    assert call.inputs == {"token": "***", "header": "Bearer ***", "prefix": "***"}
    assert run.steps["each"].output == [
        {"token": digest(PASSWORD), "header": digest(f"{item}:{TOKEN}"), "prefix": digest("")}
        for item in ("a", "b")
    ]
    items = [s for key, s in run.steps.items() if key.startswith("each[")]
    assert [s.inputs for s in items] == [
        {"token": "***", "header": "a:***"},
        {"token": "***", "header": "b:***"},
    ]
    with Client(db_url) as client:
        text = stored_text(client)
        assert "Bearer ***" in text
        assert TOKEN not in text and PASSWORD not in text


def test_a_retried_call_gets_its_secrets_again(db_url: str) -> None:
    wf = Workflow("retried_secret")
    key = uuid.uuid4().hex
    wf.step(
        "flaky",
        fails_once,
        key=key,
        token="${{ secrets.API_TOKEN }}",
        retry={"max_attempts": 2, "delay": 0},
    )
    run = legato.run(wf, url=db_url, timeout=30)

    assert run.status is RunStatus.COMPLETED, run.error
    step = run.steps["flaky"]
    assert step.output == digest(TOKEN)  # the second attempt was not called with "***"
    assert step.inputs == {"key": key, "token": "***"}
    [first] = [a for a in step.attempts if a.error is not None]
    assert first.error is not None
    assert first.error.message == "refused with ***"
    with Client(db_url) as client:
        text = stored_text(client)
        assert "refused with ***" in text and TOKEN not in text


def drive_all(client: Client, worker: Worker, run_ids: list[str], timeout: float = 15) -> list[Run]:
    deadline = time.monotonic() + timeout
    while not all(client.get(r, with_steps=False).finished for r in run_ids):
        assert time.monotonic() < deadline, [client.get(r) for r in run_ids]
        worker.tick()
        time.sleep(0.002)  # let the task threads report
    worker.tick()
    return [client.get(r) for r in run_ids]


def test_a_secret_the_worker_does_not_lend_fails_its_step_and_the_worker_goes_on(
    db_url: str,
) -> None:
    def reading(name: str, secret: str) -> Workflow:
        wf = Workflow(name)
        wf.step("call", sign, token=f"${{{{ secrets.{secret} }}}}")
        return wf

    calm = Workflow("calm")
    calm.step("double", plain, x=21)
    with Client(db_url) as client:
        worker = Worker(client, poll_interval=0.01)
        try:
            refused = client.start(reading("refused", "NOT_LENT"))
            unset = client.start(reading("unset", "API_UNSET"))
            fine = client.start(calm)
            runs = drive_all(client, worker, [refused, unset, fine])
        finally:
            worker.close()
        text = stored_text(client)

    refused_run, unset_run, fine_run = runs
    assert fine_run.status is RunStatus.COMPLETED
    assert fine_run.steps["double"].output == 42
    expected = {
        "refused": "step 'call': secret 'NOT_LENT' is not allowed by LEGATO_SECRETS "
        "(API_*, DB_PASSWORD) in this worker's environment; add it there "
        "(e.g. LEGATO_SECRETS=API_*,DB_PASSWORD,NOT_LENT)",
        "unset": "step 'call': secret 'API_UNSET' is allowed by LEGATO_SECRETS but not set "
        "in this worker's environment",
    }
    for run in (refused_run, unset_run):
        step = run.steps["call"]
        assert run.status is RunStatus.FAILED
        assert step.status is StepStatus.FAILED
        assert step.error is not None
        assert (step.error.type, step.error.message) == ("SecretError", expected[run.workflow])
        assert len(step.attempts) == 1  # not retried: the same worker would refuse again
    assert "not-lent-" not in text
