"""Map steps on each backend: a task or steps of their own once per item of a list.

Whole runs go through ``legato.run``; where the order of events matters (which
items run at once, in what order results arrive) the store is driven directly
with ``claim``/``report``, so nothing depends on timing.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from typer.testing import CliRunner

import legato
from legato import Client, RunStatus, StepStatus, Workflow
from legato.cli.main import app
from legato.store.base import ClaimedStep, ClaimRequest
from store.helpers import claim, failed, ok, report

from .tasks_map import (
    ALL_TASKS,
    add,
    calls,
    counted,
    describe,
    double,
    echo,
    fail_on,
    flaky_item,
    greet,
    inc,
    listing,
    total,
)


def grab(client: Client, limit: int = 100) -> list[ClaimedStep]:
    """Claim whatever of this suite's tasks is queued, up to ``limit``."""
    return claim(client, tasks=ALL_TASKS, limit=limit)


def keys(steps: list[ClaimedStep]) -> list[str]:
    return sorted(s.step_id for s in steps)


def statuses(client: Client, run_id: str, *wanted: str) -> dict[str, str]:
    steps = client.get(run_id).steps
    return {k: steps[k].status.value for k in wanted}


class Held:
    """The attempts a store-level test holds, by instance key: claim, then finish them."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.steps: dict[str, ClaimedStep] = {}

    def claim(self) -> list[str]:
        """Claim with a big limit; the keys newly claimed, sorted."""
        new = grab(self.client)
        for step in new:
            assert step.step_id not in self.steps, step.step_id
            self.steps[step.step_id] = step
        return keys(new)

    def finish(self, key: str, output: Any) -> None:
        step = self.steps.pop(key)
        assert report(self.client, [ok(step, output)]).accepted == 1

    def fail(self, key: str, *, retryable: bool = False) -> None:
        step = self.steps.pop(key)
        assert report(self.client, [failed(step, retryable=retryable)]).accepted == 1


def running_items(client: Client, run_id: str, map_id: str = "m") -> list[str]:
    """The map's items now running (a task form item, or an item whose steps run)."""
    run = client.get(run_id)
    return sorted(
        key
        for key, step in run.steps.items()
        if step.scope == map_id and step.index is not None and step.status is StepStatus.RUNNING
    )


# -- task form --------------------------------------------------------------------------------


def test_task_form_outputs_item_outputs_in_item_order(db_url: str) -> None:
    wf = Workflow("map_order")
    m = wf.map("m", describe, over=wf.param("xs"), item=legato.item, index=legato.index)
    after = wf.step("after", echo, x=m.output)
    wf.outputs(result=m.output, after=after.output)
    run = legato.run(wf, {"xs": ["a", "b", "c", "d"]}, url=db_url, timeout=30)

    assert run.status is RunStatus.COMPLETED
    expected = [{"item": x, "index": i} for i, x in enumerate("abcd")]
    assert run.outputs == {"result": expected, "after": expected}
    mapped = run.steps["m"]
    assert (mapped.kind, mapped.status, mapped.output) == ("map", StepStatus.COMPLETED, expected)
    assert list(run.steps) == ["m", "m[0]", "m[1]", "m[2]", "m[3]", "after"]
    for i, x in enumerate("abcd"):
        step = run.steps[f"m[{i}]"]
        assert step.kind == "task"
        assert step.task == "flow_map.describe"
        assert step.status is StepStatus.COMPLETED
        assert (step.scope, step.spec_step, step.index, step.item) == ("m", "m", i, x)
        assert step.inputs == {"item": x, "index": i}
        assert step.output == {"item": x, "index": i}
    assert run.steps["after"].inputs == {"x": expected}


def test_output_keeps_item_order_whatever_order_items_finish_in(client: Client) -> None:
    wf = Workflow("map_reversed")
    m = wf.map("m", double, over=wf.param("xs"), x=legato.item)
    wf.outputs(result=m.output)
    run_id = client.start(wf, {"xs": [5, 6, 7, 8, 9]})
    held = grab(client)
    assert keys(held) == ["m[0]", "m[1]", "m[2]", "m[3]", "m[4]"]
    assert {s.step_id: s.kwargs for s in held} == {f"m[{i}]": {"x": 5 + i} for i in range(5)}
    for step in sorted(held, key=lambda s: s.step_id, reverse=True):  # last item first
        assert report(client, [ok(step, step.kwargs["x"] * 2)]).accepted == 1
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [10, 12, 14, 16, 18]}


def test_items_that_are_mappings_are_read_by_key(db_url: str) -> None:
    people = [{"name": "ada", "age": 36}, {"name": "alan", "age": 41}]
    wf = Workflow("map_dicts")
    m = wf.map(
        "m", greet, over=wf.param("people"), name=legato.item["name"], age=legato.item["age"]
    )
    wf.outputs(result=m.output)
    run = legato.run(wf, {"people": people}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": ["ada is 36", "alan is 41"]}
    assert run.steps["m[1]"].item == {"name": "alan", "age": 41}
    assert run.steps["m[1]"].inputs == {"name": "alan", "age": 41}


def test_a_missing_key_of_an_item_fails_that_item(db_url: str) -> None:
    wf = Workflow("map_missing_key")
    wf.map("m", echo, over=wf.param("rows"), x=legato.item["k"])
    run = legato.run(wf, {"rows": [{"k": 1}, {"other": 2}]}, url=db_url, timeout=30)
    assert run.status is RunStatus.FAILED
    assert run.steps["m[0]"].status is StepStatus.COMPLETED
    assert run.steps["m[0]"].output == 1
    bad = run.steps["m[1]"]
    assert bad.status is StepStatus.FAILED
    assert bad.error is not None and bad.error.type == "TemplateError"
    assert bad.error.message.startswith("step 'm[1]' inputs cannot be resolved: input 'x': ")
    assert 'item["k"]' in bad.error.message
    assert list(bad.input_errors) == ["x"]
    assert run.steps["m"].status is StepStatus.FAILED
    assert run.error is not None and run.error.step == "m[1]"


def test_an_empty_list_completes_the_map_with_an_empty_list(db_url: str) -> None:
    wf = Workflow("map_empty")
    m = wf.map("m", double, over=wf.param("xs"), x=legato.item)
    after = wf.step("after", echo, x=m.output)
    wf.outputs(result=m.output, after=after.output)
    run = legato.run(wf, {"xs": []}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [], "after": []}
    assert list(run.steps) == ["m", "after"]  # no item rows
    assert run.steps["m"].status is StepStatus.COMPLETED
    assert run.steps["m"].inputs == {"items": 0}
    assert run.steps["after"].status is StepStatus.COMPLETED
    assert run.steps["after"].inputs == {"x": []}


def test_an_empty_list_completes_a_steps_form_map_too(db_url: str) -> None:
    wf = Workflow("map_empty_steps")
    m = wf.map("m", over=wf.param("xs"))
    m.step("a", double, x=legato.item)
    after = wf.step("after", echo, x=m.output)
    wf.outputs(after=after.output)
    run = legato.run(wf, {"xs": []}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"after": []}
    assert list(run.steps) == ["m", "after"]


@pytest.mark.parametrize(
    ("over", "shown"),
    [("abc", "str 'abc'"), ({"a": 1}, "dict {'a': 1}"), (5, "int 5"), (None, "NoneType None")],
)
def test_over_that_is_not_a_list_fails_the_map_naming_it(
    db_url: str, over: Any, shown: str
) -> None:
    wf = Workflow("map_not_a_list")
    m = wf.map("m", double, over=wf.param("xs"), x=legato.item)
    wf.step("after", echo, x=m.output)
    run = legato.run(wf, {"xs": over}, url=db_url, timeout=30)
    assert run.status is RunStatus.FAILED
    message = f"step 'm': for_each must give a list, got {shown}"
    mapped = run.steps["m"]
    assert mapped.status is StepStatus.FAILED
    assert mapped.error is not None
    assert (mapped.error.type, mapped.error.message) == ("TemplateError", message)
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == ("TemplateError", message, "m")
    assert run.steps["after"].status is StepStatus.CANCELLED
    assert list(run.steps) == ["m", "after"]  # no items were made


def test_over_a_previous_steps_output(db_url: str) -> None:
    wf = Workflow("map_over_output")
    listed = wf.step("listed", listing, n=wf.param("n"))
    m = wf.map("m", double, over=listed.output, x=legato.item)
    summed = wf.step("sum", total, rows=m.output)
    wf.outputs(doubled=m.output, sum=summed.output)
    run = legato.run(wf, {"n": 5}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"doubled": [0, 2, 4, 6, 8], "sum": 20}
    assert run.steps["m"].started_at is not None
    listed_done = run.steps["listed"].finished_at
    assert listed_done is not None and run.steps["m"].started_at >= listed_done


def test_over_part_of_a_previous_steps_output(db_url: str) -> None:
    wf = Workflow("map_over_part")
    source = wf.step("source", echo, x={"rows": [1, 2, 3], "other": "x"})
    m = wf.map("m", inc, over=source.output["rows"], x=legato.item)
    wf.outputs(result=m.output)
    run = legato.run(wf, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [2, 3, 4]}


# -- steps form -------------------------------------------------------------------------------


def test_steps_form_runs_each_items_steps_in_their_order(db_url: str) -> None:
    wf = Workflow("map_steps")
    m = wf.map("m", over=wf.param("xs"))
    a = m.step("a", double, x=legato.item)
    m.step("b", add, a=a.output, b=legato.index)
    wf.outputs(result=m.output)
    run = legato.run(wf, {"xs": [1, 2, 3]}, url=db_url, timeout=30)

    assert run.status is RunStatus.COMPLETED
    # default output: each item's last step's output (b = 2 * item + index)
    assert run.outputs == {"result": [2, 5, 8]}
    assert run.steps["m"].output == [2, 5, 8]
    for i, x in enumerate([1, 2, 3]):
        item = run.steps[f"m[{i}]"]
        assert (item.kind, item.scope, item.index, item.item) == ("item", "m", i, x)
        assert item.status is StepStatus.COMPLETED
        assert item.output == 2 * x + i
        first, second = run.steps[f"m[{i}].a"], run.steps[f"m[{i}].b"]
        assert (first.scope, second.scope) == (f"m[{i}]", f"m[{i}]")
        assert (first.kind, first.spec_step, second.spec_step) == ("task", "a", "b")
        assert first.inputs == {"x": x}
        assert second.inputs == {"a": 2 * x, "b": i}  # its own item's a, not another's
        assert first.finished_at is not None and second.started_at is not None
        assert second.started_at >= first.finished_at
    assert run.steps["m[2].b"].output == 8


def test_steps_form_output_option_says_what_each_item_outputs(db_url: str) -> None:
    wf = Workflow("map_steps_output")
    m = wf.map(
        "m",
        over=wf.param("xs"),
        output={"doubled": "${{ steps.a.output }}", "at": legato.index, "was": legato.item},
    )
    a = m.step("a", double, x=legato.item)
    m.step("b", inc, x=a.output)
    wf.outputs(result=m.output)
    run = legato.run(wf, {"xs": [4, 7]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    expected = [{"doubled": 8, "at": 0, "was": 4}, {"doubled": 14, "at": 1, "was": 7}]
    assert run.outputs == {"result": expected}
    assert run.steps["m[1]"].output == expected[1]
    assert run.steps["m[1].b"].output == 15  # ran, but is not what the item outputs


def test_steps_inside_a_map_read_steps_outside_it(db_url: str) -> None:
    wf = Workflow("map_reads_outside")
    base = wf.step("base", echo, x=100)
    m = wf.map("m", over=wf.param("xs"))
    m.step("a", add, a=base.output, b=legato.item)
    wf.outputs(result=m.output)
    run = legato.run(wf, {"xs": [1, 2]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [101, 102]}
    started, base_done = run.steps["m"].started_at, run.steps["base"].finished_at
    assert started is not None and base_done is not None and started >= base_done


def test_steps_form_with_two_last_steps_outputs_both_by_id(db_url: str) -> None:
    wf = Workflow("map_two_sinks")
    m = wf.map("m", over=wf.param("xs"))
    m.step("a", double, x=legato.item)
    m.step("b", inc, x=legato.item)
    wf.outputs(result=m.output)
    run = legato.run(wf, {"xs": [1, 10]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [{"a": 2, "b": 2}, {"a": 20, "b": 11}]}


# -- max_parallel -----------------------------------------------------------------------------


def test_max_parallel_bounds_the_items_running_at_once(client: Client) -> None:
    wf = Workflow("map_parallel")
    m = wf.map("m", double, over=wf.param("xs"), max_parallel=2, x=legato.item)
    wf.outputs(result=m.output)
    run_id = client.start(wf, {"xs": [10, 11, 12, 13, 14, 15]})

    held = grab(client)
    assert keys(held) == ["m[0]", "m[1]"]
    assert grab(client) == []  # a big limit, and still only two
    assert statuses(client, run_id, "m[2]", "m[3]", "m[4]", "m[5]") == dict.fromkeys(
        ["m[2]", "m[3]", "m[4]", "m[5]"], "waiting"
    )
    started = keys(held)
    while held:
        assert len(running_items(client, run_id)) == len(held) <= 2
        done, held = held[0], held[1:]
        assert report(client, [ok(done, done.kwargs["x"] * 2)]).accepted == 1
        new = grab(client)
        waiting = 6 - len(started)
        assert len(new) == (1 if waiting else 0), (done.step_id, keys(new))
        assert grab(client) == []
        held += new
        started += keys(new)
    assert started == [f"m[{i}]" for i in range(6)]  # items start in item order
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [20, 22, 24, 26, 28, 30]}


def test_max_parallel_frees_two_slots_when_two_items_finish_together(client: Client) -> None:
    wf = Workflow("map_parallel_batch")
    wf.map("m", double, over=wf.param("xs"), max_parallel=3, x=legato.item)
    run_id = client.start(wf, {"xs": list(range(7))})
    held = grab(client)
    assert keys(held) == ["m[0]", "m[1]", "m[2]"]
    request = ClaimRequest(
        worker_id="w1", queues=("default",), tasks=ALL_TASKS, limit=100, lease=30.0
    )
    outcome = report(client, [ok(held[0], 0), ok(held[1], 2)], request)  # reported, then claimed
    assert keys(outcome.claimed) == ["m[3]", "m[4]"]
    assert running_items(client, run_id) == ["m[2]", "m[3]", "m[4]"]


def test_max_parallel_counts_an_item_running_until_all_its_steps_finish(client: Client) -> None:
    wf = Workflow("map_parallel_steps")
    m = wf.map("m", over=wf.param("xs"), max_parallel=2)
    a = m.step("a", double, x=legato.item)
    m.step("b", inc, x=a.output)
    wf.outputs(result=m.output)
    run_id = client.start(wf, {"xs": [1, 2, 3, 4]})
    held = Held(client)

    assert held.claim() == ["m[0].a", "m[1].a"]
    assert held.claim() == []
    assert running_items(client, run_id) == ["m[0]", "m[1]"]
    assert statuses(client, run_id, "m[2]", "m[3]") == {"m[2]": "waiting", "m[3]": "waiting"}
    assert "m[2].a" not in client.get(run_id).steps  # a gated item's steps are not made yet

    held.finish("m[0].a", 2)
    # m[0] still runs (its b is next), so no third item starts
    assert held.claim() == ["m[0].b"]
    assert running_items(client, run_id) == ["m[0]", "m[1]"]

    held.finish("m[0].b", 3)  # m[0] is done: m[2] takes its slot
    assert held.claim() == ["m[2].a"]
    assert running_items(client, run_id) == ["m[1]", "m[2]"]
    assert statuses(client, run_id, "m[0]", "m[3]") == {"m[0]": "completed", "m[3]": "waiting"}

    held.finish("m[1].a", 4)
    held.finish("m[2].a", 6)
    assert held.claim() == ["m[1].b", "m[2].b"]
    assert held.claim() == []  # m[3] still waits: m[1] and m[2] run their b
    held.finish("m[2].b", 7)
    assert held.claim() == ["m[3].a"]
    held.finish("m[1].b", 5)
    held.finish("m[3].a", 8)
    assert held.claim() == ["m[3].b"]
    held.finish("m[3].b", 9)
    assert held.steps == {}
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [3, 5, 7, 9]}


def test_max_parallel_end_to_end_never_runs_more_than_that(db_url: str) -> None:
    key = f"parallel-{uuid.uuid4()}"
    wf = Workflow("map_parallel_e2e")
    m = wf.map("m", counted, over=wf.param("xs"), max_parallel=2, key=key, x=legato.item, flaky=-1)
    wf.outputs(result=m.output)
    run = legato.run(wf, {"xs": list(range(8))}, url=db_url, concurrency=8, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [f"{i} after 1" for i in range(8)]}
    spans = []
    for i in range(8):
        step = run.steps[f"m[{i}]"]
        assert step.started_at is not None and step.finished_at is not None
        spans.append((step.started_at, step.finished_at))
    for start, _ in spans:  # at any item's start, at most two items had started and not finished
        overlapping = [s for s, f in spans if s <= start < f]
        assert len(overlapping) <= 2


def test_a_failed_item_under_max_parallel_cancels_the_items_still_waiting(client: Client) -> None:
    wf = Workflow("map_parallel_fail")
    m = wf.map("m", fail_on, over=wf.param("xs"), max_parallel=2, x=legato.item, bad=1)
    wf.step("after", echo, x=m.output)
    run_id = client.start(wf, {"xs": [0, 1, 2, 3, 4]})
    held = Held(client)
    assert held.claim() == ["m[0]", "m[1]"]
    held.fail("m[1]")
    assert held.claim() == []  # nothing more starts in a failed map
    run = client.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error.step == "m[1]"
    assert run.steps["m"].status is StepStatus.FAILED
    assert {k: run.steps[k].status.value for k in ("m[2]", "m[3]", "m[4]", "after")} == (
        dict.fromkeys(["m[2]", "m[3]", "m[4]", "after"], "cancelled")
    )


def test_an_item_being_retried_keeps_its_slot(client: Client) -> None:
    wf = Workflow("map_parallel_retry")
    m = wf.map(
        "m",
        double,
        over=wf.param("xs"),
        max_parallel=1,
        retry={"max_attempts": 2, "delay": 0, "jitter": False},
        x=legato.item,
    )
    wf.outputs(result=m.output)
    run_id = client.start(wf, {"xs": [1, 2]})
    held = Held(client)
    assert held.claim() == ["m[0]"]
    held.fail("m[0]", retryable=True)
    assert held.claim() == ["m[0]"]  # its second attempt, not the next item
    assert held.steps["m[0]"].attempt == 2
    assert statuses(client, run_id, "m[1]") == {"m[1]": "waiting"}
    held.finish("m[0]", 2)
    assert held.claim() == ["m[1]"]
    held.finish("m[1]", 4)
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [2, 4]}


def test_a_failed_item_of_a_map_that_continues_frees_its_slot(client: Client) -> None:
    wf = Workflow("map_parallel_continue")
    m = wf.map(
        "m",
        fail_on,
        over=wf.param("xs"),
        max_parallel=2,
        continue_on_error=True,
        x=legato.item,
        bad=0,
    )
    wf.outputs(result=m.output)
    run_id = client.start(wf, {"xs": [0, 1, 2, 3]})
    held = Held(client)
    assert held.claim() == ["m[0]", "m[1]"]
    held.fail("m[0]")
    assert held.claim() == ["m[2]"]  # the failed item's slot goes to the next
    held.finish("m[1]", 10)
    assert held.claim() == ["m[3]"]
    held.finish("m[2]", 20)
    held.finish("m[3]", 30)
    run = client.get(run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [None, 10, 20, 30]}
    assert run.steps["m[0]"].status is StepStatus.FAILED


# -- failures and retries ---------------------------------------------------------------------


def test_a_failed_item_fails_the_map_and_the_run(db_url: str) -> None:
    wf = Workflow("map_fails")
    m = wf.map("m", fail_on, over=wf.param("xs"), x=legato.item, bad=2)
    wf.step("after", echo, x=m.output)
    run = legato.run(wf, {"xs": [1, 2, 3]}, url=db_url, timeout=30)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.message, run.error.step) == (
        "ValueError",
        "item 2 is bad",
        "m[1]",
    )
    bad = run.steps["m[1]"]
    assert bad.status is StepStatus.FAILED
    assert bad.error is not None and bad.error.message == "item 2 is bad"
    mapped = run.steps["m"]
    assert mapped.status is StepStatus.FAILED
    assert mapped.error is not None and mapped.error.message == "item 2 is bad"
    assert mapped.output is None
    assert run.steps["after"].status is StepStatus.CANCELLED


def test_continue_on_error_keeps_the_run_going_with_none_for_the_failed_item(
    db_url: str,
) -> None:
    wf = Workflow("map_continues")
    m = wf.map("m", fail_on, over=wf.param("xs"), x=legato.item, bad=2, continue_on_error=True)
    after = wf.step("after", echo, x=m.output)
    wf.outputs(result=m.output, after=after.output)
    run = legato.run(wf, {"xs": [1, 2, 3]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.error is None
    assert run.outputs == {"result": [10, None, 30], "after": [10, None, 30]}
    assert run.steps["m"].status is StepStatus.COMPLETED
    bad = run.steps["m[1]"]
    assert bad.status is StepStatus.FAILED
    assert bad.error is not None and bad.error.message == "item 2 is bad"
    assert run.steps["after"].status is StepStatus.COMPLETED


def test_continue_on_error_in_steps_form_gives_none_for_the_failed_item(db_url: str) -> None:
    wf = Workflow("map_steps_continue")
    m = wf.map("m", over=wf.param("xs"), continue_on_error=True)
    a = m.step("a", fail_on, x=legato.item, bad=2)
    m.step("b", inc, x=a.output)
    after = wf.step("after", echo, x=m.output)
    wf.outputs(after=after.output)
    run = legato.run(wf, {"xs": [1, 2, 3]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"after": [11, None, 31]}
    assert run.steps["m[1]"].status is StepStatus.FAILED
    assert run.steps["m[1].a"].status is StepStatus.FAILED
    assert run.steps["m[1].b"].status is StepStatus.CANCELLED
    assert run.steps["m[0].b"].status is StepStatus.COMPLETED


def test_a_failed_step_in_an_item_fails_the_map_without_continue_on_error(db_url: str) -> None:
    wf = Workflow("map_steps_fail")
    m = wf.map("m", over=wf.param("xs"), max_parallel=1)
    a = m.step("a", fail_on, x=legato.item, bad=2)
    m.step("b", inc, x=a.output)
    wf.step("after", echo, x=m.output)
    run = legato.run(wf, {"xs": [1, 2, 3]}, url=db_url, timeout=30)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.message, run.error.step) == ("item 2 is bad", "m[1].a")
    assert run.steps["m[0]"].status is StepStatus.COMPLETED
    assert run.steps["m[1]"].status is StepStatus.FAILED
    assert run.steps["m[1].b"].status is StepStatus.CANCELLED
    assert run.steps["m[2]"].status is StepStatus.CANCELLED
    assert "m[2].a" not in run.steps  # never opened
    assert run.steps["m"].status is StepStatus.FAILED
    assert run.steps["after"].status is StepStatus.CANCELLED


def test_task_retries_apply_to_each_item_alone(db_url: str) -> None:
    key = f"retry-{uuid.uuid4()}"
    wf = Workflow("map_retries")
    m = wf.map("m", counted, over=wf.param("xs"), key=key, x=legato.item, flaky=2)
    wf.outputs(result=m.output)
    run = legato.run(wf, {"xs": [1, 2, 3]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": ["1 after 1", "2 after 2", "3 after 1"]}
    assert [calls(f"{key}:{x}") for x in (1, 2, 3)] == [1, 2, 1]  # the others ran once
    assert [run.steps[f"m[{i}]"].attempt for i in range(3)] == [1, 2, 1]
    retried = run.steps["m[1]"]
    assert [(a.number, a.status) for a in retried.attempts] == [(1, "failed"), (2, "completed")]
    assert retried.attempts[0].error is not None
    assert retried.attempts[0].error.message == "item 2 attempt 1 failed"


def test_the_maps_retry_option_applies_to_each_item(db_url: str) -> None:
    key = f"map-retry-{uuid.uuid4()}"
    wf = Workflow("map_retry_option")
    m = wf.map(
        "m",
        flaky_item,
        over=wf.param("xs"),
        retry={"max_attempts": 2, "delay": 0},
        key=key,
        x=legato.item,
        flaky=0,
    )
    wf.outputs(result=m.output)
    run = legato.run(wf, {"xs": [0, 1]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": ["0 after 2", "1 after 1"]}
    assert [calls(f"{key}:{x}") for x in (0, 1)] == [2, 1]
    assert run.steps["m[0]"].max_attempts == 2


def test_without_retries_the_flaky_item_fails_the_run(db_url: str) -> None:
    key = f"no-retry-{uuid.uuid4()}"
    wf = Workflow("map_no_retry")
    wf.map("m", flaky_item, over=wf.param("xs"), key=key, x=legato.item, flaky=0)
    run = legato.run(wf, {"xs": [0]}, url=db_url, timeout=30)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type, run.error.step) == ("ConnectionError", "m[0]")
    assert calls(f"{key}:0") == 1


# -- size -------------------------------------------------------------------------------------


BIG = 10_000


def test_a_map_over_ten_thousand_items_with_a_worker(db_url: str) -> None:
    wf = Workflow("map_big_worker")
    m = wf.map("m", inc, over=wf.param("xs"), x=legato.item)
    wf.outputs(result=m.output)
    began = time.monotonic()
    run = legato.run(wf, {"xs": list(range(BIG))}, url=db_url, concurrency=32, timeout=120)
    elapsed = time.monotonic() - began
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": list(range(1, BIG + 1))}
    assert (run.steps_total, run.steps_done) == (BIG + 1, BIG + 1)
    assert run.steps["m"].inputs == {"items": BIG}
    keys = [k for k in run.steps if k != "m"]
    assert keys == [f"m[{i}]" for i in range(BIG)]  # each item once, in item order
    assert all(run.steps[k].attempt == 1 for k in keys)  # none ran twice
    print(f"\n{BIG} items with a worker on {db_url.split(':')[0]}: {elapsed:.2f}s")


# -- nesting ----------------------------------------------------------------------------------


def test_a_map_inside_a_maps_steps(db_url: str) -> None:
    wf = Workflow("map_nested")
    outer = wf.map("outer", over=wf.param("rows"))
    inner = outer.map("inner", double, over=legato.item, x=legato.item)
    outer.step("sum", total, rows=inner.output)
    wf.outputs(result=outer.output)
    run = legato.run(wf, {"rows": [[1, 2], [3], []]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [6, 6, 0]}
    assert run.steps["outer[0].inner"].output == [2, 4]
    assert run.steps["outer[2].inner"].output == []
    deep = run.steps["outer[0].inner[1]"]
    assert (deep.kind, deep.scope, deep.index, deep.item) == ("task", "outer[0].inner", 1, 2)
    assert deep.inputs == {"x": 2}
    assert run.steps["outer[1].sum"].inputs == {"rows": [6]}


def test_a_steps_form_map_inside_a_steps_form_map(db_url: str) -> None:
    wf = Workflow("map_nested_steps")
    outer = wf.map("outer", over=wf.param("rows"), max_parallel=1)
    inner = outer.map("inner", over=legato.item, max_parallel=1)
    inner.step("d", describe, item=legato.item, index=legato.index)
    wf.outputs(result=outer.output)
    run = legato.run(wf, {"rows": [["a", "b"], ["c"]]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {
        "result": [
            [{"item": "a", "index": 0}, {"item": "b", "index": 1}],
            [{"item": "c", "index": 0}],
        ]
    }
    leaf = run.steps["outer[0].inner[1].d"]
    assert leaf.scope == "outer[0].inner[1]"
    assert run.steps["outer[0].inner[1]"].kind == "item"


def test_a_map_inside_a_loop(db_url: str) -> None:
    wf = Workflow("map_in_loop")
    loop = wf.loop("lp", max_iterations=5)
    loop.map("m", add, over=wf.param("xs"), a=legato.item, b=legato.iteration)
    loop.repeat_until("${{ iteration >= 2 }}")
    wf.outputs(result=loop.output)
    run = legato.run(wf, {"xs": [10, 20]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.outputs == {"result": [12, 22]}  # the last iteration's map
    assert [run.steps[f"lp[{i}].m"].output for i in range(3)] == [[10, 20], [11, 21], [12, 22]]
    assert run.steps["lp[1].m[1]"].inputs == {"a": 20, "b": 1}
    assert "lp[3].m" not in run.steps


# -- display ----------------------------------------------------------------------------------


def test_runs_show_lists_a_maps_items(db_url: str) -> None:
    wf = Workflow("map_shown")
    m = wf.map("m", over=wf.param("xs"))
    a = m.step("a", double, x=legato.item)
    m.step("b", inc, x=a.output)
    wf.map("t", fail_on, over=wf.param("xs"), x=legato.item, bad=2, continue_on_error=True)
    run = legato.run(wf, {"xs": [1, 2, 3]}, url=db_url, timeout=30)
    assert run.status is RunStatus.COMPLETED
    result = CliRunner().invoke(
        app, ["runs", "show", run.id, "--url", db_url], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    # the table's rows by their first cell: the instance key
    rows = [line.split("│") for line in result.stdout.splitlines() if line.startswith("│")]
    by_key: dict[str, list[str]] = {}
    for cells in rows:
        assert cells[1].strip() not in by_key, cells
        by_key[cells[1].strip()] = [c.strip() for c in cells[2:]]

    def row(key: str) -> str:
        return " | ".join(by_key[key])

    assert list(by_key) == [
        "m",
        "m[0]",
        "m[0].a",
        "m[0].b",
        "m[1]",
        "m[1].a",
        "m[1].b",
        "m[2]",
        "m[2].a",
        "m[2].b",
        "t",
        "t[0]",
        "t[1]",
        "t[2]",
    ]
    for key in ("m", "m[0]", "m[2]", "m[1].a", "m[2].b", "t", "t[0]", "t[2]"):
        assert "completed" in row(key), key
    assert "failed" in row("t[1]") and "item 2 is bad" in row("t[1]")
    assert "flow_map.inc" in row("m[2].b")
    assert "3 items" in row("m")
    as_json = CliRunner().invoke(app, ["runs", "show", run.id, "--json", "--url", db_url])
    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.stdout)
    assert shown["steps"]["m"]["output"] == [3, 5, 7]
    assert shown["steps"]["t"]["output"] == [10, None, 30]
    assert shown["steps"]["m[1]"]["kind"] == "item"
    assert shown["steps"]["t[1]"]["status"] == "failed"
