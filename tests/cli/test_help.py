"""``--help`` of every command: no type placeholders where nothing is typed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from legato.cli.main import app

from .helpers import Invoke


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


def test_every_command_is_covered() -> None:
    assert {" ".join(path) for path in COMMANDS} >= {
        "",
        "run",
        "worker",
        "runs",
        "runs list",
        "runs show",
        "db",
        "db upgrade",
        "deploy",
        "definitions",
        "definitions list",
    }


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "legato")
def test_help_shows_no_type_placeholders(legato: Invoke, path: tuple[str, ...]) -> None:
    result = legato(*path, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "<bool>" not in text
    assert "<str>" not in text
    assert not re.search(r"<[a-z]+>", text), text
    # Flags still show their help text on their own line, and options that
    # take a value still show what to give.
    lines = text.splitlines()
    for param in COMMANDS[path].params:
        if getattr(param, "hidden", False) or param.param_type_name != "option":
            continue
        [line] = [line for line in lines if f" {param.opts[0]} " in line]
        help_start = " ".join((param.help or "").split()[:3])
        assert help_start in line, line
        if param.is_flag:
            assert param.metavar is None
        else:
            assert param.metavar is not None and param.metavar in line, line
    assert any("--help" in line and "Show this message and exit." in line for line in lines)


def test_flags_in_run_help(legato: Invoke) -> None:
    lines = legato("run", "--help").stdout.splitlines()
    [quiet] = [line for line in lines if "--quiet" in line]
    assert re.search(r"--quiet\s+-q\s+Print only the outputs and errors\.", quiet), quiet
    [lease] = [line for line in legato("worker", "--help").stdout.splitlines() if "--lease" in line]
    assert "DURATION" in lease
    [argument] = [line for line in lines if "TARGET" in line and "The workflow" in line]
    assert re.search(r"TARGET\s+The workflow:", argument), argument
