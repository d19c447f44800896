"""``legato runs list`` and ``legato runs show``: tables for people, JSON for scripts."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from .helpers import Invoke, assert_usage_error, stored_runs, target


@pytest.fixture
def two_runs(legato: Invoke, db_url: str) -> dict[str, str]:
    """One completed etl run and one failed run, by status."""
    assert legato("run", target("etl"), "-p", "source=s3://a", "--url", db_url).exit_code == 0
    assert legato("run", target("failing"), "--url", db_url).exit_code == 1
    return {run.status.value: run.id for run in stored_runs(db_url)}


def test_list_shows_a_table_newest_first(
    legato: Invoke, db_url: str, two_runs: dict[str, str]
) -> None:
    result = legato("runs", "list", "--url", db_url)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if two_runs["failed"] in line]
    assert len(rows) == 1
    assert "cli_failing@1" in rows[0]
    assert "failed" in rows[0]
    assert "1/2" in rows[0]
    completed = next(line for line in result.stdout.splitlines() if two_runs["completed"] in line)
    assert "cli_etl@1.0.0" in completed
    assert "2/2" in completed
    assert result.stdout.index(two_runs["failed"]) < result.stdout.index(two_runs["completed"])
    for header in ("id", "workflow", "status", "steps", "created", "duration"):
        assert header in result.stdout


def test_list_filters_and_prints_json(
    legato: Invoke, db_url: str, two_runs: dict[str, str]
) -> None:
    result = legato("runs", "list", "--status", "failed", "--json", "--url", db_url)
    assert result.exit_code == 0, result.output
    [listed] = json.loads(result.stdout)
    assert listed["id"] == two_runs["failed"]
    assert listed["status"] == "failed"
    assert listed["error"]["type"] == "ValueError"
    datetime.fromisoformat(listed["created_at"])

    by_workflow = legato("runs", "list", "--workflow", "cli_etl", "--json", "--url", db_url)
    assert [r["id"] for r in json.loads(by_workflow.stdout)] == [two_runs["completed"]]

    limited = legato("runs", "list", "--limit", "1", "--json", "--url", db_url)
    assert [r["id"] for r in json.loads(limited.stdout)] == [two_runs["failed"]]


def test_list_on_an_empty_database(legato: Invoke, sqlite_url: str) -> None:
    result = legato("runs", "list", "--url", sqlite_url)
    assert result.exit_code == 0
    assert "no runs" in result.stdout
    assert json.loads(legato("runs", "list", "--json", "--url", sqlite_url).stdout) == []


def test_list_refuses_an_unknown_status(legato: Invoke, sqlite_url: str) -> None:
    result = legato("runs", "list", "--status", "lost", "--url", sqlite_url)
    assert_usage_error(result, "unknown run status 'lost'")


def test_show_prints_the_run_its_steps_and_failed_attempts(
    legato: Invoke, db_url: str, two_runs: dict[str, str]
) -> None:
    result = legato("runs", "show", two_runs["failed"], "--url", db_url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert two_runs["failed"] in out
    assert "cli_failing@1" in out
    assert '{"message": "kaput"}' in out  # params
    assert "step 'explode': ValueError: kaput" in out  # the run's error
    extract = next(line for line in out.splitlines() if "flows.extract" in line)
    assert "completed" in extract
    assert "1/1" in extract
    explode = next(line for line in out.splitlines() if "flows.explode" in line)
    assert "failed" in explode
    assert "2/2" in explode
    assert "ValueError: kaput" in explode
    assert "failed attempts" in out
    assert "explode attempt 1/2" in out
    assert "explode attempt 2/2" in out
    assert "Traceback" not in out
    verbose = legato("runs", "show", two_runs["failed"], "-v", "--url", db_url)
    assert "Traceback (most recent call last)" in verbose.stdout


def test_show_json_is_the_whole_run(legato: Invoke, db_url: str, two_runs: dict[str, str]) -> None:
    result = legato("runs", "show", two_runs["completed"], "--json", "--url", db_url)
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["id"] == two_runs["completed"]
    assert run["workflow"] == "cli_etl"
    assert run["status"] == "completed"
    assert run["params"] == {"source": "s3://a"}
    assert run["outputs"] == {"count": 3, "source": "s3://a"}
    assert list(run["steps"]) == ["extract", "count"]
    step = run["steps"]["count"]
    assert step["inputs"] == {"rows": [1, 2, 3]}
    assert step["output"] == 3
    assert step["attempts"][0]["number"] == 1
    for stamp in (run["created_at"], run["finished_at"], step["attempts"][0]["finished_at"]):
        assert datetime.fromisoformat(stamp).tzinfo is not None

    failed = json.loads(
        legato("runs", "show", two_runs["failed"], "--json", "--url", db_url).stdout
    )
    attempts = failed["steps"]["explode"]["attempts"]
    assert [a["error"]["message"] for a in attempts] == ["kaput", "kaput"]


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        ("not-a-run", "no run with id 'not-a-run'"),
        ("01a211ad-e67a-7112-8288-8ed710dc4689", "no run with id '01a211ad-e67a-7112-8288"),
    ],
)
def test_show_an_unknown_run(legato: Invoke, db_url: str, run_id: str, expected: str) -> None:
    assert_usage_error(legato("runs", "show", run_id, "--url", db_url), expected)


def test_a_database_that_refuses_is_one_line_with_the_reason(legato: Invoke, pg_url: str) -> None:
    base, _, _ = pg_url.rpartition("/")
    scheme, _, host = base.partition("://")
    url = f"{scheme}://no_such_role:secret@{host.rpartition('@')[2]}/nowhere"
    result = legato("runs", "list", "--url", url)
    assert_usage_error(result, "cannot connect to PostgreSQL", 'role "no_such_role" does not exist')
    assert "secret" not in result.stderr
