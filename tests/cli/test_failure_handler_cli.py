"""``on_failure`` from the shell: a definition file naming a handler, ``runs cancel
--run-failure-handler``, and ``runs show`` linking a failed run and its handler."""

from __future__ import annotations

import json

import pytest

from legato import Client, DefinitionError, RunStatus, Workflow
from legato.files import load_text
from store.helpers import claim, failed, report

from .helpers import Invoke

TASKS = ("store_suite.echo",)

GUARDED = """
name: guarded
params:
  day: str
on_failure:
  workflow: cleanup
  version: 2
  params:
    failed: ${{ run.id }}
    why: "${{ run.error.type }}: ${{ run.error.message }}"
    day: ${{ params.day }}
steps:
  - id: work
    uses: store_suite.echo
"""


def cleanup() -> Workflow:
    from store.tasks import echo

    wf = Workflow("cleanup", version="2")
    for name in ("failed", "why", "day"):
        wf.param(name, type="str")
    wf.step("tidy", echo, x=1)
    return wf


def test_a_definition_file_names_a_handler_started_with_templated_params(
    legato: Invoke, db_url: str
) -> None:
    [spec] = load_text(GUARDED)
    assert spec.on_failure is not None and spec.on_failure.version == "2"
    with Client(db_url) as client:
        client.deploy(cleanup())
        run_id = client.start(spec, {"day": "2024-05-01"})
        [work] = claim(client, tasks=TASKS)
        report(client, [failed(work, "disk full", retryable=False)])
        run = client.get(run_id)
        assert run.failure_handler_run_id is not None
        handler = client.get(run.failure_handler_run_id)
    assert handler.params == {
        "failed": run_id,
        "why": "ValueError: disk full",
        "day": "2024-05-01",
    }
    shown = legato("runs", "show", run_id, "--url", db_url)
    assert shown.exit_code == 0, shown.output
    assert f"failure handler  {handler.id}" in shown.stdout
    other = legato("runs", "show", handler.id, "--url", db_url)
    assert f"handles failure of  {run_id}" in other.stdout
    handler_json = json.loads(legato("runs", "show", handler.id, "--json", "--url", db_url).stdout)
    assert handler_json["handler_of"] == run_id
    as_json = json.loads(legato("runs", "show", run_id, "--json", "--url", db_url).stdout)
    assert as_json["failure_handler_run_id"] == handler.id


def test_cancel_from_the_shell_starts_the_handler_only_when_asked(
    legato: Invoke, db_url: str
) -> None:
    [spec] = load_text(GUARDED)
    with Client(db_url) as client:
        client.deploy(cleanup())
        plain = client.start(spec, {"day": "d1"})
        asked = client.start(spec, {"day": "d2"})
    for run_id, flags in ((plain, []), (asked, ["--run-failure-handler"])):
        done = legato("runs", "cancel", run_id, *flags, "--url", db_url)
        assert done.exit_code == 0, done.output
    with Client(db_url) as client:
        assert client.get(plain).status is RunStatus.CANCELLED
        assert client.get(plain).failure_handler_run_id is None
        handler_id = client.get(asked).failure_handler_run_id
        assert handler_id is not None
        assert client.get(handler_id).params["day"] == "d2"


def test_the_schema_describes_on_failure(legato: Invoke) -> None:
    schema = json.loads(legato("schema").stdout)
    assert "on_failure" in schema["properties"]


def test_a_definition_file_naming_itself_as_its_handler_is_refused() -> None:
    text = GUARDED.replace("workflow: cleanup", "workflow: guarded")
    with pytest.raises(DefinitionError, match=r":2:1: on_failure names the workflow itself"):
        load_text(text)
