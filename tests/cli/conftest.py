"""Fixtures for the command-line tests: a folder of their own and ways to call ``legato``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner, Result

from legato.cli.loading import load_module
from legato.cli.main import app

from .helpers import FLOWS, Invoke, legato_command, subprocess_env


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test works in its own folder, with no LEGATO_* settings leaking in."""
    monkeypatch.chdir(tmp_path)
    for name in ("LEGATO_URL", "LEGATO_IMPORTS", "LEGATO_CONF_PATH"):
        monkeypatch.delenv(name, raising=False)
    # Loading a file puts its folder on sys.path; keep that to this test.
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def flows() -> ModuleType:
    """tests/cli/flows.py, imported the way the command imports it."""
    return load_module(str(FLOWS))


@pytest.fixture
def legato() -> Invoke:
    """Call the app in this process: ``legato("runs", "list", "--url", url)``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"COLUMNS": "200"})

    return invoke


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``legato`` command in a child process, in the test's folder."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*legato_command(), *args],
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``legato ...`` in the background; whatever is still running is killed after."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            args if args[0] != "legato" else [*legato_command(), *args[1:]],
            cwd=tmp_path,
            env=env or subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
