"""Fixtures for the suites that start worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import ProcessGroup


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start worker processes with ``procs.worker(url, ...)``; all are killed at teardown."""
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.kill_all()
