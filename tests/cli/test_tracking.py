"""``legato runs search``, ``legato runs history``, ``legato prune`` and the run metadata
``legato runs show`` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from legato import Client

from .helpers import Invoke, assert_usage_error, stored_runs, target


@pytest.fixture
def two_runs(legato: Invoke, db_url: str) -> dict[str, str]:
    """One completed etl run and one failed run, by status."""
    assert legato("run", target("etl"), "-p", "source=s3://a", "--url", db_url).exit_code == 0
    assert legato("run", target("failing"), "--url", db_url).exit_code == 1
    return {run.status.value: run.id for run in stored_runs(db_url)}


def test_search_takes_a_query_and_pages(
    legato: Invoke, db_url: str, two_runs: dict[str, str]
) -> None:
    result = legato("runs", "search", "status:failed", "--url", db_url)
    assert result.exit_code == 0, result.output
    assert two_runs["failed"] in result.stdout and two_runs["completed"] not in result.stdout
    assert "cli_failing@1" in result.stdout

    text = legato("runs", "search", '"s3://a" workflow:cli_etl', "--json", "--url", db_url)
    assert text.exit_code == 0, text.output
    document = json.loads(text.stdout)
    assert [r["id"] for r in document["runs"]] == [two_runs["completed"]]
    assert document["next_cursor"] is None
    assert "steps" not in document["runs"][0]

    first = json.loads(legato("runs", "search", "-n", "1", "--json", "--url", db_url).stdout)
    assert [r["id"] for r in first["runs"]] == [two_runs["failed"]]
    rest = legato(
        "runs", "search", "-n", "1", "--cursor", first["next_cursor"], "--json", "--url", db_url
    )
    assert [r["id"] for r in json.loads(rest.stdout)["runs"]] == [two_runs["completed"]]

    paged = legato("runs", "search", "-n", "1", "--url", db_url)
    assert f"--cursor {first['next_cursor']}" in paged.stderr  # how to read on

    oldest = legato("runs", "search", "--oldest", "--json", "--url", db_url)
    assert [r["id"] for r in json.loads(oldest.stdout)["runs"]] == [
        two_runs["completed"],
        two_runs["failed"],
    ]
    none = legato("runs", "search", "tag:team=nobody", "--url", db_url)
    assert none.exit_code == 0 and "no runs match" in none.stdout


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("statu:failed", "unknown filter 'statu' in 'statu:failed' at character 1"),
        ("status:faild", "'status:faild' at character 1: unknown run status 'faild'"),
        ('"open', "the quote at character 1 is never closed"),
        ("since:soon", "'since:soon' at character 1: expected a duration before now"),
    ],
)
def test_a_bad_query_is_one_error_line(
    legato: Invoke, db_url: str, query: str, expected: str
) -> None:
    Client(db_url).close()
    assert_usage_error(legato("runs", "search", query, "--url", db_url), expected)


def test_search_reads_without_creating_a_database(legato: Invoke, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    assert_usage_error(legato("runs", "search", "--url", url), "no legato database at")
    assert not (tmp_path / "missing.db").exists()


def test_history_lists_every_event_with_its_actor(
    legato: Invoke, db_url: str, two_runs: dict[str, str]
) -> None:
    failed = two_runs["failed"]
    result = legato("runs", "history", failed[:13], "--url", db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # one line an event
    assert lines[0].split()[:5] == ["time", "event", "step", "by", "details"]
    events = [line.split()[2] for line in lines[1:]]
    assert events[0] == "run.created" and events[-1] == "run.failed"
    assert "step.retrying" in events and "step.failed" in events
    retrying = next(line for line in lines if "step.retrying" in line)
    assert "explode #1" in retrying and "ValueError: kaput; again in" in retrying
    assert "Traceback" not in result.stdout

    full = legato("runs", "history", failed, "-v", "--url", db_url)
    assert '"message": "kaput"' in full.stdout and "Traceback" in full.stdout

    document = json.loads(legato("runs", "history", failed, "--json", "--url", db_url).stdout)
    with Client(db_url) as client:
        assert [e["type"] for e in document] == [e.type for e in client.history(failed)]
        worked = ("step.started", "step.completed", "step.retrying", "step.failed", "run.failed")
        workers = {e.actor for e in client.history(failed) if e.type in worked}
    assert len(workers) == 1 and None not in workers  # the worker that ran it, named
    assert {e["actor"] for e in document if e["type"] == "step.started"} == workers

    unknown = legato("runs", "history", "0000000000", "--url", db_url)
    assert_usage_error(unknown, "no run has an id starting with '0000000000'")


def test_show_prints_the_runs_metadata(
    legato: Invoke, db_url: str, two_runs: dict[str, str]
) -> None:
    with Client(db_url) as client:
        run = client.get(two_runs["failed"])
    out = legato("runs", "show", run.id, "--url", db_url).stdout
    assert f"workflow hash  {run.workflow_hash}" in out
    assert "tasks" in out and "2 task steps" in out
    assert "step 'explode': ValueError: kaput" in out


def test_prune_deletes_old_finished_runs(
    legato: Invoke, db_url: str, two_runs: dict[str, str]
) -> None:
    dry = legato("prune", "--older-than", "0.001s", "--dry-run", "--url", db_url)
    assert dry.exit_code == 0, dry.output
    assert "would prune 2 runs (dry run: nothing deleted)" in dry.stdout
    assert len(stored_runs(db_url)) == 2

    kept = legato("prune", "--older-than", "1d", "--url", db_url)
    assert kept.exit_code == 0 and "nothing to prune" in kept.stdout

    only_failed = legato(
        "prune", "--older-than", "0.001s", "--status", "failed", "--json", "--url", db_url
    )
    assert json.loads(only_failed.stdout) == {
        "runs": 1,
        "child_runs": 0,
        "batches": 1,
        "dry_run": False,
        "skipped": [],
    }
    assert [run.id for run in stored_runs(db_url)] == [two_runs["completed"]]
    last = legato("prune", "--older-than", "0.001s", "-w", "cli_etl", "--url", db_url)
    assert "pruned 1 run in 1 transaction" in last.stdout
    assert stored_runs(db_url) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--older-than", "soon"), "older_than: expected a duration such as '30s'"),
        (("--older-than", "1d", "--status", "running"), "'running' is not a status a run"),
    ],
)
def test_prune_refuses_bad_options(
    legato: Invoke, db_url: str, args: tuple[str, ...], expected: str
) -> None:
    Client(db_url).close()
    assert_usage_error(legato("prune", *args, "--url", db_url), expected)
