"""``legato worker`` options checked before anything starts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import FLOWS, Invoke, assert_usage_error

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.parametrize(
    ("lease", "message"),
    [
        ("nan", "--lease: a duration must be a finite number of seconds, got 'nan'"),
        ("inf", "--lease: a duration must be a finite number of seconds, got 'inf'"),
        ("1e999", "--lease: a duration must be a finite number of seconds, got '1e999'"),
        ("0", "--lease: a duration must be more than zero, got '0'"),
        ("0s", "--lease: a duration must be more than zero, got '0s'"),
        ("-1", "--lease: a duration cannot be negative, got '-1'"),
        ("soon", "--lease: expected a duration such as '30s'"),
    ],
)
def test_a_bad_lease_is_one_error_line(
    legato: Invoke, sqlite_url: str, lease: str, message: str
) -> None:
    result = legato("worker", "--import", str(FLOWS), "--lease", lease, "--url", sqlite_url)
    assert_usage_error(result, message)
    assert result.stderr.startswith(f"error: {message}")


@pytest.mark.parametrize("lease", ["nan", "0", "-1", "inf"])
def test_a_bad_lease_in_a_real_process(run_cli: RunCli, sqlite_url: str, lease: str) -> None:
    result = run_cli("worker", "--import", str(FLOWS), "--lease", lease, "--url", sqlite_url)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: --lease: a duration ")


def test_workers_list_shows_each_live_worker(legato: Invoke, db_url: str) -> None:
    from legato import Client
    from legato.store.base import WorkerInfo

    with Client(db_url) as client:
        client.store.register_worker(
            WorkerInfo(
                id="vm:42:abc",
                host="vm",
                pid=42,
                queues=("default", "io"),
                tasks=("a.b",),
                concurrency=8,
            ),
            lease=30,
        )
    table = legato("workers", "list", "--url", db_url)
    assert table.exit_code == 0, table.output
    assert "vm:42:abc" in table.stdout and "default, io" in table.stdout and "0/8" in table.stdout
    as_json = legato("workers", "list", "--url", db_url, "--json")
    [worker] = json.loads(as_json.stdout)
    assert (worker["pid"], worker["running"], worker["queues"]) == (42, 0, ["default", "io"])


def test_workers_list_creates_no_database(legato: Invoke, tmp_path: Path) -> None:
    result = legato("workers", "list", "--url", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.exit_code == 2
    assert "legato db upgrade" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_an_unknown_pool_is_one_error_line(legato: Invoke, sqlite_url: str) -> None:
    result = legato("worker", "--import", str(FLOWS), "--pool", "fork", "--url", sqlite_url)
    assert_usage_error(result, "pool must be one of thread, process, asyncio; got 'fork'")


def test_an_asyncio_pool_refuses_plain_function_tasks(legato: Invoke, sqlite_url: str) -> None:
    result = legato("worker", "--import", str(FLOWS), "--pool", "asyncio", "--url", sqlite_url)
    assert_usage_error(result, "the asyncio pool runs async def tasks only", "--pool thread")
