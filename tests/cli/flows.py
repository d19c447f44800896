"""Workflows the command-line tests run. Loaded by path (as module ``flows``),
the way ``legato run tests/cli/flows.py:etl`` and ``legato worker --import`` load it,
so the tests, the command and worker processes agree on task names (``flows.*``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import legato
from legato import WorkflowSpec


@legato.task
def extract(source: str) -> dict[str, Any]:
    return {"rows": [1, 2, 3], "source": source}


@legato.task
def count(rows: list[int]) -> int:
    return len(rows)


@legato.task
def size(extracted: dict[str, Any]) -> int:
    return len(extracted["rows"])


@legato.task
def echo(**values: Any) -> dict[str, Any]:
    return values


@legato.task
def chatty(source: str) -> str:
    print("a task printing to stdout")
    logging.getLogger("cli.chatty").info("an INFO line from %s", source)
    return source


@legato.task(retries=1, retry_delay=0)
def explode(message: str) -> None:
    raise ValueError(message)


@legato.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@legato.task
def until_exists(path: str, limit: float = 120) -> str:
    """Returns once ``path`` exists (or gives up after ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "there" if os.path.exists(path) else "gave up"


etl = legato.Workflow("cli_etl", version="1.0.0")
extracted = etl.step("extract", extract, source=etl.param("source", type="str"))
counted = etl.step("count", count, rows=extracted.output["rows"])
etl.outputs(count=counted.output, source=extracted.output["source"])

typed = legato.Workflow("cli_typed")
typed.step(
    "echo",
    echo,
    n=typed.param("n", type="int"),
    x=typed.param("x", 0.5, type="float"),
    flag=typed.param("flag", False, type="bool"),
    items=typed.param("items", [], type="list"),
    opts=typed.param("opts", {}, type="dict"),
    name=typed.param("name", "", type="str"),
    anything=typed.param("anything", None),
)
typed.outputs(values="${{ steps.echo.output }}")

failing = legato.Workflow("cli_failing")
first = failing.step("extract", extract, source="here")
failing.step("explode", explode, message=failing.param("message", "kaput"), needs=[first])

printing = legato.Workflow("cli_printing")
printing.outputs(said=printing.step("chatty", chatty, source="hello").output)

slow = legato.Workflow("cli_slow")
napped = slow.step("first", nap, seconds=slow.param("seconds", 0.5, type="float"))
then = slow.step("second", nap, seconds=slow.param("seconds"), needs=[napped])
slow.outputs(total="${{ steps.first.output + steps.second.output }}")

gated = legato.Workflow("cli_gated")  # its first step runs until a file appears
opened = gated.step("first", until_exists, path=gated.param("path", type="str"))
gated.outputs(first=opened.output, second=gated.step("second", nap, seconds=0.01).output)

moved = legato.Workflow("cli_moved")  # a step on a queue its task does not name
seconds = moved.param("seconds", 0.01, type="float")
moved.outputs(slept=moved.step("far", nap, seconds=seconds, queue="io").output)

sequence = legato.Sequence("cli_sequence", [extract, size])

spec = WorkflowSpec.parse(
    {
        "name": "cli_spec",
        "params": {"source": {"type": "str"}},
        "steps": [
            {"id": "extract", "task": "flows.extract", "inputs": {"source": "${{ params.source }}"}}
        ],
        "outputs": {"rows": "${{ steps.extract.output.rows }}"},
    }
)


@legato.task
def half(n: int) -> float:
    """Half of ``n``; an odd ``n`` fails, so a map over numbers has failed items."""
    if n % 2:
        raise ValueError(f"{n} is odd")
    return n / 2


approval = legato.Workflow("cli_approval")  # a person answers with `legato runs signal`
prepared = approval.step("prepare", extract, source="draft")
answer = approval.wait_for_signal("approve", "approval", timeout="1h", needs=[prepared])
approval.outputs(answer=approval.step("ship", echo, answer=answer.output).output)

halves = legato.Workflow("cli_halves")  # a map whose odd items fail, kept going
halved = halves.map(
    "halve", half, over=halves.param("numbers", type="list"), n=legato.item, continue_on_error=True
)
halves.outputs(halves=halved.output)

counting = legato.Workflow("cli_counting")  # a loop that runs three iterations
looped = counting.loop("count", until="${{ iteration >= 2 }}", max_iterations=5)
looped.step("tick", echo, at=legato.iteration)

dated = legato.Workflow("cli_dated")  # params a schedule or a person fills in
dated.step(
    "echo",
    echo,
    day=dated.param("day", type="date"),
    at=dated.param("at", "2024-01-01T00:00:00+00:00", type="datetime"),
    level=dated.param("level", 1, type="choice", options=[1, 2, "max"]),
)
dated.outputs(values="${{ steps.echo.output }}")

grouped = legato.Workflow("cli_grouped")  # a group of two steps, then one after it
job = grouped.group("job")
job.step("load", echo, at=1)
job.step("save", echo, at=2, after=["load"])
grouped.step("report", echo, at=job.output)

parent = legato.Workflow("cli_parent")  # calls cli_etl as a child run
parent.outputs(child=parent.sub_workflow("call", etl, params={"source": "inner"}).output)


@legato.task
def talks_until(path: str, ctx: legato.Context) -> str:
    """Prints and logs, waits for ``path`` to appear, then logs again."""
    print("before the gate")
    ctx.logger.warning("waiting for %s", os.path.basename(path))
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    ctx.logger.info("after the gate")
    return "talked"


talking = legato.Workflow("cli_talking")  # a step that says things before and after a file
talking.outputs(
    said=talking.step("talk", talks_until, path=talking.param("path", type="str")).output
)

handled_cleanup = legato.Workflow("cli_cleanup")  # the failure handler of cli_handled
handled_cleanup.step("tidy", echo, failed=handled_cleanup.param("run_id", type="str"))
handled = legato.Workflow("cli_handled", on_failure=handled_cleanup)
handled.step("explode", explode, message="kaput")
