"""``secrets.NAME``: where a definition may read one, how a worker lends it, how it is masked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from legato import RetryPolicy, TaskRegistry, task
from legato.config import Secrets
from legato.engine.planner import conceal, resolve_with_secrets
from legato.errors import DefinitionError, SecretError
from legato.model.spec import WorkflowSpec
from legato.model.steps import MapStep, TaskStep
from legato.store.base import ClaimedStep
from legato.worker.executor import Executor

# -- where a definition may read them ------------------------------------------------------


def parse(steps: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.parse({"name": "wf", "steps": steps, **extra})


def problems(steps: list[dict[str, Any]], **extra: Any) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse(steps, **extra)
    return info.value.problems


def test_a_task_call_reads_secrets_in_its_inputs_and_args() -> None:
    spec = parse(
        [
            {
                "id": "call",
                "task": "t",
                "args": ["${{ secrets.A }}"],
                "inputs": {"h": "Bearer ${{ secrets['B'] }}", "n": 1},
            },
            {
                "id": "each",
                "kind": "map",
                "for_each": [1, 2],
                "task": "t",
                "inputs": {"key": "${{ secrets.C }}-${{ item }}"},
            },
            {"id": "whole", "task": "t", "inputs": "${{ {'k': secrets.D} }}"},
            {"id": "plain", "task": "t", "inputs": {"x": "${{ params }}"}},
        ]
    )
    assert spec.graph.secrets == {
        "call": {"A", "B"},
        "each": {"C"},
        "whole": {"D"},
    }


@pytest.mark.parametrize(
    ("step", "where"),
    [
        ({"id": "s", "task": "t", "when": "${{ secrets.X == 'y' }}"}, "step 's' when"),
        ({"id": "s", "kind": "set_vars", "vars": {"v": "${{ secrets.X }}"}}, "step 's' vars"),
        (
            {"id": "s", "kind": "map", "for_each": "${{ secrets.X }}", "task": "t"},
            "step 's' for_each",
        ),
        (
            {
                "id": "s",
                "kind": "switch",
                "value": "${{ secrets.X }}",
                "cases": {"a": [{"id": "in", "task": "t"}]},
            },
            "step 's' value",
        ),
        (
            {
                "id": "s",
                "kind": "sub_workflow",
                "workflow": "w",
                "params": {"p": "${{ secrets.X }}"},
            },
            "step 's' params",
        ),
        (
            {"id": "s", "kind": "terminate", "reason": "${{ secrets.X }}"},
            "step 's' reason",
        ),
        ({"id": "s", "kind": "sleep", "duration": "${{ secrets.X }}"}, "step 's' duration"),
        (
            {
                "id": "s",
                "kind": "loop",
                "steps": [{"id": "in", "task": "t"}],
                "until": "${{ secrets.X }}",
            },
            "step 's' until",
        ),
        (
            {
                "id": "s",
                "kind": "map",
                "for_each": [1],
                "steps": [{"id": "in", "task": "t"}],
                "output": "${{ secrets.X }}",
            },
            "step 's' output",
        ),
    ],
)
def test_secrets_anywhere_else_are_a_definition_problem(step: dict[str, Any], where: str) -> None:
    assert (
        f"{where} reads secrets.X; secrets can be read only in the inputs and args of a task "
        "step (or of a map's task), where the worker resolves them"
    ) in problems([step])


def test_secrets_in_the_workflow_outputs_are_a_definition_problem() -> None:
    found = problems([{"id": "a", "task": "t"}], outputs={"o": "${{ secrets.X }}"})
    assert found == [
        "output 'o' reads secrets.X; secrets can be read only in the inputs and args of a "
        "task step (or of a map's task), where the worker resolves them"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{ secrets }}", "read one secret by name (secrets.NAME), not the whole secrets context"),
        ("${{ secrets[params.k] }}", "secrets[...] must use a fixed name"),
        ("${{ secrets | list }}", "read one secret by name (secrets.NAME)"),
    ],
)
def test_the_whole_secrets_context_or_a_computed_name_is_refused(text: str, message: str) -> None:
    [found] = problems([{"id": "a", "task": "t", "inputs": {"x": text}}], extra_params=True)
    assert found.startswith(f"step 'a' inputs: expression {text!r}: {message}")


# -- what a worker lends ----------------------------------------------------------------------


def test_a_worker_lends_the_variables_its_patterns_match() -> None:
    secrets = Secrets(("DB_*", "TOKEN"), {"DB_PASSWORD": "pw", "TOKEN": "t", "OTHER": "o"})
    assert secrets.values(["TOKEN", "DB_PASSWORD"]) == {"DB_PASSWORD": "pw", "TOKEN": "t"}
    assert secrets.allows("DB_USER") and not secrets.allows("db_user")  # case counts
    assert not secrets.allows("OTHER")


def test_a_secret_not_allowed_or_not_set_names_the_secret_and_the_setting() -> None:
    secrets = Secrets(("DB_*",), {"DB_PASSWORD": "pw", "OTHER": "other-value"})
    with pytest.raises(SecretError) as info:
        secrets.values(["OTHER", "DB_USER"])
    assert str(info.value) == (
        "secret 'OTHER' is not allowed by LEGATO_SECRETS (DB_*) in this worker's environment; "
        "add it there (e.g. LEGATO_SECRETS=DB_*,OTHER); secret 'DB_USER' is allowed by "
        "LEGATO_SECRETS but not set in this worker's environment"
    )
    assert "other-value" not in str(info.value)
    with pytest.raises(SecretError) as info:
        Secrets(environ={"A": "1", "B": "2"}).values(["A", "B"])
    assert str(info.value) == (
        "secrets 'A', 'B' are not allowed by LEGATO_SECRETS (unset, so none) in this worker's "
        "environment; add them there (e.g. LEGATO_SECRETS=A,B)"
    )


# -- resolving and masking ------------------------------------------------------------------


def task_step(**fields: Any) -> TaskStep:
    return TaskStep(id="s", task="t", **fields)


def test_the_call_gets_the_values_and_the_record_reads_each_secret_as_stars() -> None:
    step = task_step(
        args=["${{ secrets.TOKEN }}", "${{ params.n }}"],
        inputs={
            "url": "postgresql://app:${{ secrets.PW }}@db/app",
            "port": "${{ secrets.PORT | int }}",
            "conf": "${{ secrets.CONF | from_json }}",
            "n": "${{ params.n }}",
        },
    )
    values = {"TOKEN": "tok-123", "PW": "hunter2", "PORT": "5432", "CONF": '{"a": 1}'}
    call = resolve_with_secrets(step, {"params": {"n": 3}}, values)
    assert call.args == ["tok-123", 3]
    assert call.kwargs == {
        "url": "postgresql://app:hunter2@db/app",
        "port": 5432,
        "conf": {"a": 1},
        "n": 3,
    }
    assert call.errors == {}
    assert call.recorded == {
        "args": ["***", 3],
        "kwargs": {
            "url": "postgresql://app:***@db/app",
            "port": 0,  # ``'***' | int``: what the masked text gives
            "conf": "***",  # ``'***' | from_json`` fails: the whole input is masked
            "n": 3,
        },
        "secrets": ["CONF", "PORT", "PW", "TOKEN"],
    }
    assert set(call.hidden) == set(values.values())


def test_an_input_that_fails_is_recorded_without_the_secret_in_its_error() -> None:
    step = task_step(inputs={"day": "${{ secrets.DAY | fmt }}", "ok": "${{ secrets.DAY }}"})
    call = resolve_with_secrets(step, {}, {"DAY": "not-a-day-s3cr3t"})
    assert call.kwargs == {"ok": "not-a-day-s3cr3t"}
    assert call.errors == {
        "day": "expression '${{ secrets.DAY | fmt }}' failed: ValueError: fmt: '***' is not "
        "an ISO 8601 date or time (such as 2024-05-01 or 2024-05-01T09:30:00+00:00)"
    }
    assert call.recorded == {"args": [], "kwargs": {"ok": "***"}, "secrets": ["DAY"]}
    assert "s3cr3t" not in json.dumps([call.errors, call.recorded, call.error_message("s")])


def test_a_map_item_call_reads_secrets_beside_its_item() -> None:
    step = MapStep(
        id="m", kind="map", for_each=[1], task="t", inputs={"k": "${{ secrets.K }}:${{ item }}"}
    )
    call = resolve_with_secrets(step, {"item": 7, "index": 0}, {"K": "key"})
    assert call.kwargs == {"k": "key:7"}
    assert call.recorded == {"args": [], "kwargs": {"k": "***:7"}, "secrets": ["K"]}


def test_conceal_replaces_the_longest_values_first() -> None:
    assert conceal("a secret-value here, secret", ("secret-value", "secret")) == ("a *** here, ***")
    assert conceal("nothing", ()) == "nothing"


# -- the executor: the task gets the values, the result records them masked ------------------

registry = TaskRegistry()


@task(name="unit.secrets.echo", registry=registry)
def echo(token: str) -> str:
    return f"len {len(token)}"


@task(name="unit.secrets.quote", registry=registry)
def quote(token: str) -> None:
    raise ValueError(f"the server refused {token}")


@pytest.fixture
def executor() -> Iterator[Executor]:
    ex = Executor(1, max_payload_bytes=10_000)
    yield ex
    ex.shutdown()


def claimed(fn: Any, token: str) -> ClaimedStep:
    return ClaimedStep(
        step_run_id=1,
        run_id="r",
        step_id="s",
        task=fn.name,
        attempt=1,
        max_attempts=1,
        retry=RetryPolicy(),
        timeout=None,
        priority=0,
        args=[],
        kwargs={"token": token},
        recorded={"args": [], "kwargs": {"token": "***"}, "secrets": ["T"]},
        hidden=(token,),
    )


def test_the_task_gets_the_value_and_the_result_records_the_mask(executor: Executor) -> None:
    result = executor.submit(claimed(echo, "abcdef"), echo).result(timeout=10)
    assert result.ok and result.output_json == '"len 6"'
    assert json.loads(result.inputs_json or "") == {
        "args": [],
        "kwargs": {"token": "***"},
        "secrets": ["T"],
    }


def test_a_task_error_quoting_its_secret_is_recorded_concealed(executor: Executor) -> None:
    result = executor.submit(claimed(quote, "tok-9f8e"), quote).result(timeout=10)
    assert not result.ok and result.error is not None
    assert result.error.message == "the server refused ***"
    assert "tok-9f8e" not in (result.error.traceback or "")
    assert "the server refused ***" in (result.error.traceback or "")
