"""Fixtures for the definition-file tests: a folder of their own and ``legato`` in process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.helpers import Invoke
from legato.cli.main import app

#: the tasks module the files call, given to commands as --import
TASKS = Path(__file__).with_name("definition_tasks.py")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test works in its own folder, with no LEGATO_* settings leaking in."""
    monkeypatch.chdir(tmp_path)
    for name in ("LEGATO_URL", "LEGATO_IMPORTS", "LEGATO_ALLOW_SHELL", "LEGATO_ENV_ALLOW"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def legato() -> Invoke:
    """Call the app in this process: ``legato("validate", path)``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"COLUMNS": "200"})

    return invoke
