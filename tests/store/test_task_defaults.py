"""Task defaults reach every step of a run, whoever started it and whenever the step is made.

A run keeps the defaults its starter resolved (from the task code, else as a
worker recorded them), so the steps it creates later (map items, steps of
branches and loop bodies, child runs) get the task's queue, priority, retry
policy and timeout in whichever process makes them.
"""

from __future__ import annotations

import pytest

import legato
from legato import Client, TaskRegistry, UnknownTaskError, Workflow, WorkflowSpec
from legato.client import task_defaults
from legato.store.base import ClaimedStep, ClaimRequest

from .helpers import claim, count, failed, ok, report, table_counts

_QUEUED = "defaults_suite.queued"
_PLAIN = "defaults_suite.plain"


@legato.task(
    name=_QUEUED, queue="special", priority=6, retries=2, retry_delay=0, timeout=40, jitter=False
)
def queued(x: int = 0) -> int:
    return x


@legato.task(name=_PLAIN, retries=3, retry_delay=0, timeout=12)
def plain() -> int:
    return 1


def _claim_special(client: Client, limit: int = 100) -> list[ClaimedStep]:
    return claim(client, queues=("special",), tasks=(_QUEUED,), limit=limit)


def test_map_items_made_later_get_the_starters_defaults(client: Client) -> None:
    """No worker ever recorded the task: the items still go to its queue, with its policy."""
    wf = Workflow("defaults_map")
    wf.map("each", queued, over=wf.param("xs"), x=legato.item)
    run_id = client.start(wf, {"xs": [1, 2, 3]})
    assert claim(client, queues=("default",), tasks=(_QUEUED,)) == []
    items = _claim_special(client)
    assert sorted(s.step_id for s in items) == ["each[0]", "each[1]", "each[2]"]
    assert {(s.priority, s.max_attempts, s.timeout) for s in items} == {(6, 3, 40.0)}
    # The policy is the task's: a failure is retried (attempt 2 of 3), not final.
    outcome = report(client, [failed(items[0])])
    assert outcome.failures and outcome.failures[0].retry_in is not None
    assert client.get(run_id).steps[items[0].step_id].status == "queued"


def test_nested_steps_get_the_defaults_in_a_loop_and_a_branch(client: Client) -> None:
    wf = Workflow("defaults_nested")
    sw = wf.switch("sw", on=wf.param("pick"))
    sw.case("a").step("in_branch", queued, x=1)
    lp = wf.loop("lp", max_iterations=2, until="${{ iteration >= 0 }}")
    lp.step("in_loop", queued, x=2)
    client.start(wf, {"pick": "a"})
    found = {s.step_id: s for s in _claim_special(client)}
    assert set(found) == {"in_branch", "lp[0].in_loop"}
    assert {(s.priority, s.max_attempts) for s in found.values()} == {(6, 3)}


def test_a_run_started_without_the_code_uses_what_a_worker_recorded(db_url: str) -> None:
    with Client(db_url) as with_code:  # what a worker with the code records when it starts
        with_code.store.register_task_defaults({_QUEUED: task_defaults(queued)})
    spec = WorkflowSpec.parse(
        {
            "name": "no_code",
            "steps": [
                {"id": "one", "task": _QUEUED},
                {"id": "many", "kind": "map", "for_each": [1, 2], "task": _QUEUED},
            ],
        }
    )
    with Client(db_url, registry=TaskRegistry()) as without_code:
        without_code.start(spec)
        steps = _claim_special(without_code)
    assert sorted(s.step_id for s in steps) == ["many[0]", "many[1]", "one"]
    assert {(s.priority, s.max_attempts, s.timeout) for s in steps} == {(6, 3, 40.0)}


def test_a_task_nobody_knows_is_refused_at_start_and_writes_nothing(client: Client) -> None:
    spec = WorkflowSpec.parse({"name": "unknown", "steps": [{"id": "a", "task": "nowhere.task"}]})
    before = table_counts(client.store)
    with pytest.raises(UnknownTaskError, match=r"step 'a' calls task 'nowhere\.task'"):
        Client(client.url, registry=TaskRegistry(), store=client.store).start(spec)
    assert table_counts(client.store) == before


def test_a_task_nobody_knows_inside_an_inline_child_is_refused_at_start(client: Client) -> None:
    child = {"name": "child_unknown", "steps": [{"id": "c", "task": "nowhere.task"}]}
    spec = WorkflowSpec.parse(
        {"name": "parent_unknown", "steps": [{"id": "sub", "kind": "sub_workflow", "spec": child}]}
    )
    with pytest.raises(UnknownTaskError, match=r"nowhere\.task"):
        Client(client.url, registry=TaskRegistry(), store=client.store).start(spec)
    assert count(client.store, "runs") == 0


def test_an_inline_childs_steps_get_the_starters_defaults(client: Client) -> None:
    child = Workflow("defaults_child")
    child.step("c", queued, x=5)
    parent = Workflow("defaults_parent")
    parent.sub_workflow("sub", child)
    client.start(parent)
    (step,) = _claim_special(client)
    assert (step.step_id, step.priority, step.max_attempts) == ("c", 6, 3)


def test_a_claim_fills_in_defaults_nobody_had_when_the_step_was_made(client: Client) -> None:
    """A named child whose task no process knew when it was made: the claimer's code decides
    its retry policy and timeout (its queue had to be the default one)."""
    child = WorkflowSpec.parse({"name": "named_child", "steps": [{"id": "c", "task": _PLAIN}]})
    Client(client.url, registry=_registry(plain), store=client.store).start(child)  # stored
    (first,) = claim(client, tasks=(_PLAIN,))
    report(client, [ok(first, 1)])
    parent = WorkflowSpec.parse(
        {
            "name": "named_parent",
            "steps": [{"id": "sub", "kind": "sub_workflow", "workflow": "named_child"}],
        }
    )
    Client(client.url, registry=TaskRegistry(), store=client.store).start(parent)
    request = ClaimRequest(
        worker_id="w-code",
        queues=("default",),
        tasks=(_PLAIN,),
        limit=10,
        lease=30,
        defaults={_PLAIN: task_defaults(plain)},
    )
    (step,) = report(client, [], request).claimed
    assert step.step_id == "c" and step.run_id != first.run_id
    assert (step.max_attempts, step.retry.max_attempts, step.timeout) == (4, 4, 12.0)
    outcome = report(client, [failed(step)])
    assert outcome.failures and outcome.failures[0].retry_in is not None  # the filled policy holds


def _registry(*tasks: legato.Task) -> TaskRegistry:
    registry = TaskRegistry()
    for task in tasks:
        registry.add(task)
    return registry
