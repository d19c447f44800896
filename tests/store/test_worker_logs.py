"""A worker logs at INFO each failed attempt, each retry, each attempt found lost."""

from __future__ import annotations

import logging

import pytest

from legato import Client, Worker, Workflow

from .helpers import claim, drive
from .tasks import echo, fail


def test_a_worker_logs_failed_attempts_retries_and_lost_workers(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    wf = Workflow("logged")
    wf.step("flaky", fail, message="nope", retry={"max_attempts": 2, "delay": 0})
    run_id = client.start(wf)
    lost = Workflow("lost")
    lost.step("gone", echo, x=1)
    lost_id = client.start(lost)
    [gone] = claim(client, "dead-worker", lease=5, tasks=["store_suite.echo"])
    client.store.clock.advance(6)
    worker = Worker(client, worker_id="logger", sweep_interval=0)
    try:
        with caplog.at_level(logging.INFO, logger="legato.worker"):
            drive(client, run_id, worker)
            drive(client, lost_id, worker)
    finally:
        worker.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"step flaky (run {run_id}) attempt 1 failed: ValueError: nope; retrying now" in lines
    assert f"step flaky (run {run_id}) attempt 2 failed: ValueError: nope; the step fails" in lines
    [swept] = [line for line in lines if line.startswith(f"step gone (run {lost_id}) attempt 1")]
    assert "lost its worker: LeaseExpired: worker dead-worker stopped renewing its lease" in swept
    assert swept.endswith("; running it again (its retries are not spent)")
    del gone
