"""``legato runs pause|resume|cancel|retry|rerun|restart|skip|vars``: steer stored runs.

Each takes a run id (or its first 8+ characters); ``cancel``, ``retry`` and
``resume`` also take ``--all`` with filters (``--status``, ``--workflow``,
``--tag``), ask for confirmation unless ``--yes``, and report how many runs
changed and which were refused and why (exit 1 when any was refused).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any

import typer

from legato.cli.options import JsonOption, RunIdArgument, UrlOption
from legato.cli.output import (
    EXIT_FAILED,
    configure_logging,
    fail,
    print_json,
    stderr,
    stdout,
    user_errors,
)
from legato.cli.runs import app
from legato.client import Client
from legato.errors import ConfigError
from legato.model.operations import BulkResult

__all__ = ["app"]

OptionalRunId = Annotated[
    str | None,
    typer.Argument(
        metavar="RUN_ID",
        help="The run's id, or its first 8 or more characters; else --all.",
        show_default=False,
    ),
]
ByOption = Annotated[
    str | None,
    typer.Option("--by", metavar="WHO", help="Who does it, recorded in the run's events."),
]
AllOption = Annotated[
    bool, typer.Option("--all", help="Every run the filters match, instead of one RUN_ID.")
]
StatusFilter = Annotated[
    str | None,
    typer.Option("--status", "-s", metavar="STATUS", help="With --all: runs with this status."),
]
WorkflowFilter = Annotated[
    str | None,
    typer.Option("--workflow", "-w", metavar="NAME", help="With --all: runs of this workflow."),
]
TagFilter = Annotated[
    list[str] | None,
    typer.Option("--tag", "-t", metavar="KEY=VALUE", help="With --all: runs with this tag."),
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="With --all: do it without asking first.")
]


@app.command("pause")
def pause_run(
    run_id: RunIdArgument,
    now: Annotated[
        bool, typer.Option("--now", help="Also ask running steps to stop (they run again).")
    ] = False,
    by: ByOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Pause a run: running steps finish, nothing new starts until it is resumed."""
    _one(url, run_id, as_json, "paused", lambda c, r: c.pause(r, stop_now=now, actor=by))


@app.command("resume")
def resume_run(
    run_id: OptionalRunId = None,
    every: AllOption = False,
    status: StatusFilter = None,
    workflow: WorkflowFilter = None,
    tag: TagFilter = None,
    yes: YesOption = False,
    by: ByOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Resume a paused run (--all: every paused run the filters match)."""
    where = _filter(run_id, every, status or "paused", workflow, tag)
    if where is not None:
        _bulk(url, where, "resume", yes, as_json, lambda c: c.resume_many(actor=by, **where))
        return
    _one(url, run_id, as_json, "resumed", lambda c, r: c.resume(r, actor=by))


@app.command("cancel")
def cancel_run(
    run_id: OptionalRunId = None,
    reason: Annotated[
        str,
        typer.Option("--reason", "-r", metavar="TEXT", help="Why, recorded in the run's error."),
    ] = "cancelled from the command line",
    run_failure_handler: Annotated[
        bool,
        typer.Option(
            "--run-failure-handler",
            help="Start the workflow's failure handler (on_failure), as a failure would.",
        ),
    ] = False,
    every: AllOption = False,
    status: StatusFilter = None,
    workflow: WorkflowFilter = None,
    tag: TagFilter = None,
    yes: YesOption = False,
    by: ByOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Cancel a run (--all: every run the filters match): nothing new starts, its child
    runs are cancelled, and its running steps are asked to stop. Its workflow's
    failure handler starts only with --run-failure-handler."""
    where = _filter(run_id, every, status, workflow, tag)
    if where is not None:
        _bulk(
            url,
            where,
            "cancel",
            yes,
            as_json,
            lambda c: c.cancel_many(
                reason=reason, actor=by, run_failure_handler=run_failure_handler, **where
            ),
        )
        return
    full_id = _one(
        url,
        run_id,
        None,
        "",
        lambda c, r: c.cancel(r, reason, actor=by, run_failure_handler=run_failure_handler),
    )
    if as_json:
        print_json({"run_id": full_id, "status": "cancelled", "reason": reason})
    else:
        stdout().print(f"run {full_id} cancelled: {reason}", highlight=False)


@app.command("retry")
def retry_run(
    run_id: OptionalRunId = None,
    every: AllOption = False,
    status: StatusFilter = None,
    workflow: WorkflowFilter = None,
    tag: TagFilter = None,
    yes: YesOption = False,
    by: ByOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Retry a failed or cancelled run from where it stopped (--all: every run the filters
    match): its failed steps run again with the inputs they had; completed steps keep
    their outputs."""
    where = _filter(run_id, every, status, workflow, tag)
    if where is not None:
        _bulk(url, where, "retry", yes, as_json, lambda c: c.retry_many(actor=by, **where))
        return
    again: list[str] = []

    def retry(client: Client, full_id: str) -> None:
        again.extend(client.retry(full_id, actor=by))

    full_id = _one(url, run_id, None, "", retry)
    _again(full_id, "retried", again, as_json)


@app.command("rerun")
def rerun_run(
    run_id: RunIdArgument,
    from_step: Annotated[
        str,
        typer.Option(
            "--from", metavar="STEP", help="The step (or instance, m[3]) to run again from."
        ),
    ],
    params: Annotated[
        str | None,
        typer.Option("--params", metavar="JSON", help="Params to change, as a JSON object."),
    ] = None,
    by: ByOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Run an ended run again from a step: it and everything after it run afresh."""
    changed = _json_object(params, "--params")
    again: list[str] = []

    def rerun(client: Client, full_id: str) -> None:
        again.extend(client.rerun(full_id, from_step, params=changed, actor=by))

    full_id = _one(url, run_id, None, "", rerun)
    _again(full_id, f"rerun from {from_step}", again, as_json)


@app.command("restart")
def restart_run(
    run_id: RunIdArgument,
    latest: Annotated[
        bool,
        typer.Option("--latest", help="On the newest deployed version of its workflow."),
    ] = False,
    by: ByOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Start an ended run again from the beginning (its history kept)."""
    attempt: list[int] = []

    def restart(client: Client, full_id: str) -> None:
        attempt.append(client.restart(full_id, use_latest_version=latest, actor=by))

    full_id = _one(url, run_id, None, "", restart)
    if as_json:
        print_json({"run_id": full_id, "status": "running", "attempt": attempt[0]})
    else:
        stdout().print(f"run {full_id} restarted (attempt {attempt[0]})", highlight=False)


@app.command("skip")
def skip_step(
    run_id: RunIdArgument,
    step: Annotated[
        str, typer.Argument(metavar="STEP", help="The step to mark done.", show_default=False)
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="JSON", help="Its output, as JSON (default null)."),
    ] = None,
    by: ByOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Mark a waiting, queued, suspended (or, in a failed run, failed) step done with an
    output, and go on."""
    value = _json_value(output, "--output")
    full_id = _one(url, run_id, None, "", lambda c, r: c.skip(r, step, value, actor=by))
    if as_json:
        print_json({"run_id": full_id, "step": step, "output": value})
    else:
        stdout().print(f"step {step} of run {full_id} skipped", highlight=False)


@app.command("vars")
def update_vars(
    run_id: RunIdArgument,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY=TEXT | KEY:=JSON ...",
            help="Variables to set: KEY=TEXT sets text, KEY:=JSON any JSON value "
            "(KEY:=null sets null). None given: print the variables.",
            show_default=False,
        ),
    ] = None,
    by: ByOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Set a running run's variables (``vars`` in expressions), or print them."""
    changes = _assignments(values or [])
    configure_logging(logging.WARNING)
    with user_errors(), Client(url, migrate=False) as client:
        full_id = client.resolve_run_id(run_id)
        if changes:
            merged = client.update_variables(full_id, changes, actor=by)
        else:
            merged = client.get(full_id, with_steps=False).variables
    if as_json:
        print_json({"run_id": full_id, "variables": merged})
        return
    out = stdout()
    if not merged:
        out.print(f"run {full_id} has no variables", highlight=False)
    for key, value in sorted(merged.items()):
        out.print(f"{key} = {json.dumps(value)}", highlight=False, markup=False)


# -- shared ------------------------------------------------------------------------------------


def _one(
    url: str | None,
    run_id: str | None,
    as_json: bool | None,
    done: str,
    operation: Callable[[Client, str], Any],
) -> str:
    """Run ``operation`` on one run; say ``run X <done>`` unless ``as_json`` is None."""
    configure_logging(logging.WARNING)
    if run_id is None:
        fail("give a RUN_ID, or --all with filters")
    with user_errors(), Client(url, migrate=False) as client:
        full_id = client.resolve_run_id(run_id)
        operation(client, full_id)
    if as_json:
        print_json({"run_id": full_id, "status": done})
    elif as_json is not None:
        stdout().print(f"run {full_id} {done}", highlight=False)
    return full_id


def _again(run_id: str, what: str, steps: list[str], as_json: bool) -> None:
    if as_json:
        print_json({"run_id": run_id, "status": "running", "steps": steps})
        return
    shown = ", ".join(steps[:10]) + (f" and {len(steps) - 10} more" if len(steps) > 10 else "")
    stdout().print(
        f"run {run_id} {what}: {shown or 'nothing left to run'} run again", highlight=False
    )


def _filter(
    run_id: str | None,
    every: bool,
    status: str | None,
    workflow: str | None,
    tags: list[str] | None,
) -> dict[str, Any] | None:
    """The search filters of an ``--all`` form, or None for one run (checked: one or the
    other)."""
    if not every:
        if run_id is None:
            fail("give a RUN_ID, or --all with filters")
        return None
    if run_id is not None:
        fail("give a RUN_ID or --all, not both")
    parsed: dict[str, str] = {}
    for text in tags or []:
        key, sep, value = text.partition("=")
        if not sep or not key:
            fail(f"--tag {text!r} is not KEY=VALUE")
        parsed[key] = value
    given = {"status": status, "workflow": workflow, "tags": parsed or None}
    return {k: v for k, v in given.items() if v is not None}


def _bulk(
    url: str | None,
    where: dict[str, Any],
    operation: str,
    yes: bool,
    as_json: bool,
    apply: Callable[[Client], BulkResult],
) -> None:
    configure_logging(logging.WARNING)
    with user_errors(), Client(url, migrate=False) as client:
        matched = client.matching_runs(**where)
        if not matched:
            result = BulkResult(operation)
        elif not yes and not _confirm(
            f"{operation} {len(matched)} run(s) matching {_describe(where)}?"
        ):
            stderr().print("nothing done", highlight=False)
            raise typer.Exit(EXIT_FAILED)
        else:
            result = apply(client)
    if as_json:
        print_json(
            {"operation": operation, "changed": list(result.changed), "refused": result.refused}
        )
    else:
        stdout().print(
            f"{operation}: {len(result.changed)} run(s) changed, {len(result.refused)} refused",
            highlight=False,
        )
        for run_id, why in result.refused.items():
            stdout().print(f"  refused {run_id}: {why}", highlight=False)
    if result.refused:
        raise typer.Exit(EXIT_FAILED)


def _confirm(question: str) -> bool:
    """Ask on the terminal; no answer (no terminal, end of input) is no."""
    try:
        return typer.confirm(question, err=True)
    except (typer.Abort, EOFError):
        return False


def _describe(where: dict[str, Any]) -> str:
    parts = [f"status {where['status']}"] if where.get("status") else []
    if where.get("workflow"):
        parts.append(f"workflow {where['workflow']}")
    parts += [f"tag {k}={v}" for k, v in (where.get("tags") or {}).items()]
    return ", ".join(parts) or "no filter (every run)"


def _assignments(pairs: list[str]) -> dict[str, Any]:
    """``KEY=TEXT`` and ``KEY:=JSON`` arguments, as httpie reads them."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            fail(f"{pair!r} is neither KEY=TEXT nor KEY:=JSON")
        is_json = key.endswith(":")
        key = key.removesuffix(":")
        if not key:
            fail(f"{pair!r} names no variable")
        changes[key] = _json_value(text, f"variable {key}") if is_json else text
    return changes


def _json_value(text: str | None, option: str) -> Any:
    if text is None:
        return None
    with user_errors():
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{option} is not JSON: {exc}") from None


def _json_object(text: str | None, option: str) -> dict[str, Any] | None:
    with user_errors():
        value = _json_value(text, option)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{option} must be a JSON object, got {type(value).__name__}")
    return value
