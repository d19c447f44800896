"""The JSON gate: both databases see the same data and refuse the same values."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legato import Client, PayloadError, RunStatus, StepStatus, Worker, Workflow

from .helpers import drive
from .tasks import append_to, bad_output, echo, structured


@pytest.fixture
def worker(client: Client) -> Iterator[Worker]:
    w = Worker(client, worker_id="gate", concurrency=2)
    yield w
    w.close()


def run_one(client: Client, worker: Worker, task: object, **inputs: object) -> object:
    wf = Workflow("gate")
    wf.step("out", task, **inputs)  # type: ignore[arg-type]
    return drive(client, client.start(wf), worker)


MESSAGES = {
    "set": "step 'out' output: $.x is of type set, which JSON cannot carry (convert it to a list)",
    "object": "step 'out' output: $.rows[1] is of type object, which JSON cannot carry",
    "nan": "step 'out' output: $[1] is nan, which JSON cannot represent",
    "nul": "step 'out' output: $.text is a string containing a NUL character (\\x00)",
    "nul_key": "step 'out' output: $ has a key containing a NUL character",
    "int_key": "step 'out' output: $ has a key 1 of type int; JSON object keys must be strings",
    "surrogate": "step 'out' output: $[1] is a string with a lone surrogate, "
    "which UTF-8 cannot encode",
}


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_values_json_cannot_carry_fail_the_attempt_alike(
    client: Client, worker: Worker, kind: str
) -> None:
    run = run_one(client, worker, bad_output, kind=kind)
    assert run.status is RunStatus.FAILED  # type: ignore[attr-defined]
    step = run.steps["out"]  # type: ignore[attr-defined]
    assert step.status is StepStatus.FAILED and step.output is None
    assert step.error is not None
    assert (step.error.type, step.error.message) == ("PayloadError", MESSAGES[kind])
    assert run.error.message == MESSAGES[kind]  # type: ignore[attr-defined]
    assert run.error.step == "out"  # type: ignore[attr-defined]
    assert step.inputs == {"kind": kind}


def test_params_with_a_lone_surrogate_are_refused(client: Client) -> None:
    wf = Workflow("surrogate_params")
    wf.step("a", echo, x=wf.param("text"))
    with pytest.raises(PayloadError, match=r"\$.text is a string with a lone surrogate"):
        client.start(wf, {"text": "\udc80"})
    assert client.list_runs() == []


def test_output_over_the_size_limit_fails_the_attempt(db_url: str) -> None:
    with Client(db_url, max_payload_bytes=200) as client:
        worker = Worker(client, worker_id="small")
        try:
            run = run_one(client, worker, bad_output, kind="big")
        finally:
            worker.close()
    step = run.steps["out"]  # type: ignore[attr-defined]
    assert step.status is StepStatus.FAILED
    assert step.error is not None and step.error.type == "PayloadError"
    assert step.error.message == (
        "step 'out' output is 1,002 bytes of JSON, over the limit of 200 bytes "
        "(store large data elsewhere and pass a reference, or raise max_payload_bytes)"
    )


def test_params_over_the_size_limit_are_refused_before_writing(db_url: str) -> None:
    with Client(db_url, max_payload_bytes=100) as client:
        wf = Workflow("big_params")
        wf.step("a", echo, x=wf.param("text"))
        with pytest.raises(PayloadError) as info:
            client.start(wf, {"text": "z" * 200})
        assert str(info.value).startswith("params of big_params@1 is 211 bytes of JSON")
        assert client.list_runs() == []


def test_run_outputs_over_the_size_limit_fail_the_run(db_url: str) -> None:
    with Client(db_url, max_payload_bytes=300) as client:
        wf = Workflow("big_outputs")
        a = wf.step("a", echo, x="y" * 120)
        wf.outputs(one=a.output, two=a.output, three=a.output)
        worker = Worker(client, worker_id="small")
        try:
            run = drive(client, client.start(wf), worker)
        finally:
            worker.close()
    assert run.status is RunStatus.FAILED
    assert run.steps["a"].status is StepStatus.COMPLETED
    assert run.error is not None and run.error.type == "PayloadError"
    assert run.error.message.startswith("run outputs is 3")
    assert "over the limit of 300 bytes" in run.error.message


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("model", {"x": 1, "tags": ["a"]}),
        ("dataclass", {"name": "b", "points": [{"x": 2, "tags": []}], "size": [1, 2]}),
    ],
)
def test_models_and_dataclasses_are_stored_as_json(
    client: Client, worker: Worker, kind: str, expected: object
) -> None:
    run = run_one(client, worker, structured, kind=kind)
    assert run.status is RunStatus.COMPLETED  # type: ignore[attr-defined]
    assert run.steps["out"].output == expected  # type: ignore[attr-defined]


def test_unicode_and_nesting_survive_the_round_trip(client: Client, worker: Worker) -> None:
    value = {
        "text": 'é ☃ \U0001f600 \u2028 "q" \\',
        "deep": [[[{"n": -1.5e-300, "i": 2**63, "f": 2.0, "b": False}]]],
        "e": {},
    }
    run = run_one(client, worker, echo, x=value)
    assert run.steps["out"].output == value  # type: ignore[attr-defined]
    assert run.steps["out"].inputs == {"x": value}  # type: ignore[attr-defined]


def test_huge_floats_keep_their_type(client: Client, worker: Worker) -> None:
    run = run_one(client, worker, echo, x=[1.5e300, 1e16, 1.0])
    output = run.steps["out"].output  # type: ignore[attr-defined]
    assert output == [1.5e300, 1e16, 1.0]
    assert [type(v) for v in output] == [float, float, float]


def test_object_keys_keep_their_order(client: Client, worker: Worker) -> None:
    value = {"zeta": 1, "alpha": {"b": 2, "a": 1}, "mid": [{"y": 0, "x": 0}]}
    run = run_one(client, worker, echo, x=value)
    output = run.steps["out"].output  # type: ignore[attr-defined]
    assert list(output) == ["zeta", "alpha", "mid"]
    assert list(output["alpha"]) == ["b", "a"]
    assert list(output["mid"][0]) == ["y", "x"]
    assert list(run.steps["out"].inputs["x"]) == ["zeta", "alpha", "mid"]  # type: ignore[attr-defined]


def test_a_task_mutating_its_input_does_not_change_the_run(client: Client, worker: Worker) -> None:
    wf = Workflow("mutating")
    rows = wf.param("rows")
    first = wf.step("first", append_to, rows=rows)
    wf.step("second", append_to, rows=rows, needs=[first])
    wf.outputs(rows=rows)
    run = drive(client, client.start(wf, {"rows": ["a"]}), worker)
    assert run.status is RunStatus.COMPLETED
    assert run.params == {"rows": ["a"]}
    assert run.steps["first"].output == 2
    assert run.steps["second"].output == 2  # saw the param as stored, not as mutated
    assert run.steps["first"].inputs == {"rows": ["a"]}  # as resolved, before the call
    assert run.outputs == {"rows": ["a"]}


def test_inputs_that_resolve_to_non_json_fail_the_step(client: Client, worker: Worker) -> None:
    wf = Workflow("items")
    wf.param("d")
    wf.step("out", echo, x="${{ params.d.items() }}", retry={"max_attempts": 3, "delay": 0})
    run = drive(client, client.start(wf, {"d": {"k": 1}}), worker)
    assert run.status is RunStatus.FAILED
    step = run.steps["out"]
    assert step.attempt == 1  # not retried: the same inputs would fail the same way
    assert step.error is not None and step.error.type == "PayloadError"
    assert step.error.message == (
        "step 'out' inputs: $.x is of type dict_items, which JSON cannot carry"
    )
