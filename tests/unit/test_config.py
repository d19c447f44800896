"""Settings: arguments, then LEGATO_* variables, then defaults; bad values refused by name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from legato.config import DEFAULT_CONF_PATH, DEFAULT_URL, Settings, redact_url
from legato.errors import ConfigError
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "LEGATO_URL",
        "LEGATO_IMPORTS",
        "LEGATO_MAX_PAYLOAD_BYTES",
        "LEGATO_SECRETS",
        "LEGATO_ALLOW_SHELL",
        "LEGATO_CONF_PATH",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = Settings.load()
    assert settings == Settings(
        url=DEFAULT_URL, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES, imports=()
    )


def test_variables_then_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_URL", "sqlite:///env.db")
    monkeypatch.setenv("LEGATO_MAX_PAYLOAD_BYTES", "2048")
    monkeypatch.setenv("LEGATO_IMPORTS", "a.tasks, b.tasks c.tasks")
    settings = Settings.load()
    assert settings == Settings("sqlite:///env.db", 2048, ("a.tasks", "b.tasks", "c.tasks"))
    settings = Settings.load(url="sqlite:///arg.db", max_payload_bytes=10, imports=("x",))
    assert settings == Settings("sqlite:///arg.db", 10, ("x",))


@pytest.mark.parametrize("raw", ["0", "-1", "-1048576", "lots", "1.5", "1e6"])
def test_bad_max_payload_bytes_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LEGATO_MAX_PAYLOAD_BYTES", raw)
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert str(info.value) == (
        f"LEGATO_MAX_PAYLOAD_BYTES must be a positive number of bytes, got {raw!r}"
    )


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1024"])
def test_bad_max_payload_bytes_argument(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(max_payload_bytes=value)
    assert str(info.value) == (
        f"max_payload_bytes must be a positive number of bytes, got {value!r}"
    )


def test_secrets_and_shell_are_off_unless_the_environment_turns_them_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings.load()
    assert (settings.secrets, settings.allow_shell) == ((), False)
    monkeypatch.setenv("LEGATO_SECRETS", "DB_*, API_TOKEN,S3_KEY")
    monkeypatch.setenv("LEGATO_ALLOW_SHELL", "1")
    settings = Settings.load()
    assert settings.secrets == ("DB_*", "API_TOKEN", "S3_KEY")
    assert settings.allow_shell is True
    settings = Settings.load(secrets=("ONE",), allow_shell=False)
    assert (settings.secrets, settings.allow_shell) == (("ONE",), False)


@pytest.mark.parametrize(
    ("raw", "allowed"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("", False)],
)
def test_allow_shell_reads_yes_and_no(
    monkeypatch: pytest.MonkeyPatch, raw: str, allowed: bool
) -> None:
    monkeypatch.setenv("LEGATO_ALLOW_SHELL", raw)
    assert Settings.load().allow_shell is allowed


def test_a_bad_allow_shell_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_ALLOW_SHELL", "sometimes")
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert str(info.value) == (
        "LEGATO_ALLOW_SHELL must be 1 or 0 (true/false, yes/no, on/off), got 'sometimes'"
    )


def test_conf_path_from_the_variable_then_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load().conf_path == DEFAULT_CONF_PATH == ("./workflows",)
    monkeypatch.setenv("LEGATO_CONF_PATH", os.pathsep.join(["/etc/flows", "", "flows"]))
    assert Settings.load().conf_path == ("/etc/flows", "flows")
    assert Settings.load(conf_path="only").conf_path == ("only",)
    assert Settings.load(conf_path=f"a{os.pathsep}b").conf_path == ("a", "b")
    assert Settings.load(conf_path=(Path("a"), "b")).conf_path == ("a", "b")
    monkeypatch.setenv("LEGATO_CONF_PATH", os.pathsep)  # nothing in it: the default
    assert Settings.load().conf_path == DEFAULT_CONF_PATH


def test_urls_in_messages_hide_their_password() -> None:
    assert redact_url("postgresql://me:secret@db/x") == "postgresql://me:***@db/x"
    assert redact_url("postgresql://me@db/x") == "postgresql://me@db/x"
    assert redact_url("sqlite:///legato.db") == "sqlite:///legato.db"
