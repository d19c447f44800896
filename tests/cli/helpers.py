"""What the command-line tests share besides fixtures."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

from legato import Client, Run

#: tests/cli/flows.py: loaded by path, as the command loads it
FLOWS = Path(__file__).with_name("flows.py")

Invoke = Callable[..., Result]


def target(name: str) -> str:
    """``/abs/path/tests/cli/flows.py:name``."""
    return f"{FLOWS}:{name}"


def stored_runs(url: str) -> list[Run]:
    with Client(url) as client:
        return client.list_runs()


def legato_command() -> list[str]:
    """The installed console script, else the module: both are the real entry point."""
    script = shutil.which("legato", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "legato"]


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["COLUMNS"] = "200"
    return env


def assert_usage_error(result: Result, *expected: str) -> None:
    """Exit 2, nothing on stdout, one ``error:`` line on stderr holding each expected text."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.output
