"""A retry with a delay runs when the delay is up, not at the worker's next poll."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from itertools import pairwise

from legato import Client, RunStatus, Worker, Workflow

from .tasks import fails_twice, notes

DELAY = 0.4
POLL = 30.0  # far longer than the test may take: only the retry timer can wake the worker


def test_delayed_retries_are_picked_up_when_due(
    client: Client, workers: Callable[..., Worker]
) -> None:
    key = uuid.uuid4().hex
    wf = Workflow("retry_timing")
    wf.step(
        "flaky",
        fails_twice,
        key=key,
        retry={"max_attempts": 3, "delay": DELAY, "backoff": "fixed", "jitter": False},
    )
    run_id = client.start(wf)
    workers(client, poll_interval=POLL)
    run = client.wait(run_id, timeout=10)
    assert run.status is RunStatus.COMPLETED, run
    assert run.steps["flaky"].attempt == 3
    began = notes(key)
    gaps = [later - earlier for earlier, later in pairwise(began)]
    assert len(gaps) == 2
    assert all(gap >= DELAY for gap in gaps), gaps  # never early
    assert all(gap < DELAY + 2 for gap in gaps), gaps  # and not left for the next poll
