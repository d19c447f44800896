"""Fixtures for the integration suite: worker processes and workers in threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.support import ProcessGroup


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start worker processes with ``procs.worker(url, ...)``; all are killed at teardown."""
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.kill_all()
