"""``legato runs list`` and ``legato runs show``: tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from legato import Client
from legato.store.base import NewRun

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
    assert "2/2" in rows[0]  # both steps finished: one completed, one failed
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


def test_list_on_an_empty_database(legato: Invoke, db_url: str) -> None:
    Client(db_url).close()  # creates the schema
    result = legato("runs", "list", "--url", db_url)
    assert result.exit_code == 0
    assert "no runs" in result.stdout
    assert json.loads(legato("runs", "list", "--json", "--url", db_url).stdout) == []


def test_reading_a_missing_sqlite_file_creates_nothing(legato: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "legato.bd"  # a typo
    url = f"sqlite:///{path}"
    for command in (("runs", "list"), ("runs", "show", "01a211ad")):
        assert_usage_error(
            legato(*command, "--url", url),
            f"no legato database at {url} (no such file); create it with: "
            f"legato db upgrade --url {url}",
        )
    assert not path.exists()


def test_reading_a_database_without_the_schema_creates_nothing(
    legato: Invoke, empty_url: str
) -> None:
    if empty_url.startswith("sqlite"):
        Path(empty_url.removeprefix("sqlite:///")).touch()  # a file, but no schema in it
    for command in (("runs", "list"), ("runs", "show", "01a211ad")):
        assert_usage_error(
            legato(*command, "--url", empty_url),
            f"{empty_url} has no legato schema",
            f"create it with: legato db upgrade --url {empty_url}",
        )
    assert table_names(empty_url) == []


def test_list_refuses_an_unknown_status(legato: Invoke, db_url: str) -> None:
    Client(db_url).close()
    result = legato("runs", "list", "--status", "lost", "--url", db_url)
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
    assert "attempts that did not complete" in out
    assert "explode attempt 1 (" in out
    assert "explode attempt 2 (" in out
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
        ("not-a-run", "no run has an id starting with 'not-a-run'"),
        ("01a211ad-e67a-7112-8288-8ed710dc4689", "no run with id '01a211ad-e67a-7112-8288"),
        ("01a2", "run id '01a2' is too short: give the whole id or at least its first 8"),
    ],
)
def test_show_an_unknown_run(legato: Invoke, db_url: str, run_id: str, expected: str) -> None:
    Client(db_url).close()
    assert_usage_error(legato("runs", "show", run_id, "--url", db_url), expected)


def test_show_takes_a_unique_prefix_of_the_id(
    legato: Invoke, db_url: str, flows: ModuleType
) -> None:
    # Ids begin with the time they were made, so runs made together share a
    # prefix; these two share their first 14 characters.
    ids = ["01a2b3c4-d5e6-7000-8000-000000000001", "01a2b3c4-d5e6-7fff-8000-000000000002"]
    with Client(db_url) as client:
        for run_id in ids:
            new = NewRun(spec=flows.etl.spec, params={"source": run_id}, steps=[], run_id=run_id)
            assert client.store.create_run(new) == (run_id, True)
    for prefix in ("01a2b3c4-d5e6-70", "01A2B3C4-D5E6-70", ids[0]):
        result = legato("runs", "show", prefix, "--url", db_url)
        assert result.exit_code == 0, result.output
        assert ids[0] in result.stdout and ids[1] not in result.stdout
    for prefix in ("01a2b3c4", "01a2b3c4-d5e6-7"):
        assert_usage_error(
            legato("runs", "show", prefix, "--url", db_url),
            f"run id {prefix!r} is ambiguous: it begins several runs ({ids[0]}, {ids[1]})",
            "give more of the id",
        )
    assert_usage_error(
        legato("runs", "show", "01a2b3c5", "--url", db_url),
        "no run has an id starting with '01a2b3c5'",
    )


def test_show_says_when_no_live_worker_serves_a_queued_step(
    legato: Invoke, db_url: str, flows: ModuleType
) -> None:
    with Client(db_url) as client:
        run_id = client.start(flows.etl, {"source": "x"})
    result = legato("runs", "show", run_id, "--url", db_url)
    assert result.exit_code == 0, result.output
    assert "waiting: no live worker serves task flows.extract on queue 'default'" in (
        " ".join(result.stdout.split())
    )
    as_json = json.loads(legato("runs", "show", run_id, "--json", "--url", db_url).stdout)
    assert as_json["unserved_steps"] == ["extract"]


def table_names(url: str) -> list[str]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return [r[0] for r in conn.execute("SELECT name FROM sqlite_master").fetchall()]
        finally:
            conn.close()
    with psycopg.connect(url) as pg:
        rows = pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [r[0] for r in rows.fetchall()]


def test_runs_made_outside_a_workflow_are_listed_and_shown(legato: Invoke, db_url: str) -> None:
    from store.tasks import echo

    with Client(db_url) as client:
        tracked = client.create_workflow_run("data_pipeline", "1.0.0", inputs={"day": 1})
        client.update_workflow_run_status(tracked, "running", task_count=2)
        spawned = client.spawn_task(echo, {"x": 1}, workflow_run_id=tracked)
    listed = legato("runs", "list", "--json", "--url", db_url)
    assert listed.exit_code == 0, listed.output
    kinds = {r["id"]: (r["kind"], r["workflow"], r["status"]) for r in json.loads(listed.stdout)}
    assert kinds == {
        tracked: ("external", "data_pipeline", "running"),
        spawned.run_id: ("task", "store_suite_echo", "pending"),
    }
    shown = legato("runs", "show", tracked, "--url", db_url)
    assert shown.exit_code == 0, shown.output
    assert "data_pipeline@1.0.0" in shown.stdout and "running" in shown.stdout
    shown = legato("runs", "show", spawned.run_id, "--url", db_url)
    assert shown.exit_code == 0, shown.output
    assert tracked in shown.stdout  # its parent run
    assert "store_suite.echo" in shown.stdout
