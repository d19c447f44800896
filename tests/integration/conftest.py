"""Fixtures for the integration suite: worker processes and workers in threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.support import ProcessGroup
from legato import Client, Worker


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start worker processes with ``procs.worker(url, ...)``; all are killed at teardown."""
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.kill_all()


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """Start ``Worker.run`` in a thread: ``workers(client, **options)``; stopped at teardown."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(client: Client, **options: Any) -> Worker:
        options.setdefault("poll_interval", 0.05)
        worker = Worker(client, **options)
        thread = threading.Thread(target=worker.run, name=f"run-{worker.worker_id}", daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, _ in started:
        worker.stop()
    for worker, thread in started:
        thread.join(timeout=30)
        worker.close()
        assert not thread.is_alive(), f"{worker} did not stop"
