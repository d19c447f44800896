"""The ``legato`` command itself: version and help."""

from __future__ import annotations

from .helpers import Invoke


def test_version(legato: Invoke) -> None:
    result = legato("--version")
    assert result.exit_code == 0
    assert result.stdout == "legato 0.1.0\n"


def test_help_lists_the_commands(legato: Invoke) -> None:
    result = legato("--help")
    assert result.exit_code == 0
    for command in ("run", "runs", "worker", "db"):
        assert command in result.stdout


def test_run_help_names_its_options(legato: Invoke) -> None:
    result = legato("run", "--help")
    assert result.exit_code == 0
    for option in ("--param", "--params-json", "--tag", "--timeout", "--no-progress", "--url"):
        assert option in result.stdout
