"""Runs tracked from outside: the application drives the work, legato keeps the record.

As Absurd's tracking client does, ``create_workflow_run`` records a run of a
workflow legato does not hold (its name and version follow the same rules as
any workflow's), ``update_workflow_run_status`` reports where it stands, and
``spawn_task`` queues tasks for legato's workers, linked to it. Such a run has
no steps of its own (its kind is ``external``) and a spec with no steps stands
in for its definition, so every reader, search and history shows it like any
run. This module checks what the caller gives, before anything is written.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any, NamedTuple

from legato.errors import ParamError
from legato.model.runs import StepError
from legato.model.spec import NAME_PATTERN, VERSION_PATTERN, WorkflowSpec
from legato.model.states import RunStatus
from legato.model.steps import check_name
from legato.payload import to_json

__all__ = [
    "SpawnedTask",
    "error_option",
    "placeholder_spec",
    "result_option",
    "status_option",
    "task_count_option",
    "workflow_hash_option",
]

#: the longest workflow hash kept
MAX_HASH_CHARS = 256


class SpawnedTask(NamedTuple):
    """What ``spawn_task`` returns, unpacked as Absurd's ``(task_id, run_id,
    workflow_run_id)``. A spawned task is a standalone task's run, so its task id
    and run id are one id (what ``result``, ``get`` and ``cancel`` take)."""

    task_id: str
    run_id: str
    workflow_run_id: str | None


def placeholder_spec(name: str, version: str) -> WorkflowSpec:
    """The spec that stands in for an outside workflow: its name and version, no steps."""
    try:
        check_name("workflow_name", name, NAME_PATTERN, "lowercase letters, digits and '_'")
        check_name(
            "workflow_version", version, VERSION_PATTERN, "letters, digits, '.', '_' and '-'"
        )
    except ValueError as exc:
        raise ParamError(f"create_workflow_run: {exc}") from None
    return WorkflowSpec.model_validate(
        {
            "name": name,
            "version": version,
            "description": "tracked from outside legato: no steps, its status set by its creator",
            "steps": [],
        }
    )


def status_option(status: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise ParamError(
            f"status {status!r} is not a run status; expected one of {known}"
        ) from None


def result_option(result: Any, max_bytes: int | None) -> dict[str, Any] | None:
    """A tracked run's result: its outputs by name, as JSON."""
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise ParamError(
            f"result must be a mapping (the run's outputs by name), got {type(result).__name__}; "
            "wrap a single value: result={'value': ...}"
        )
    plain, _ = to_json(dict(result), what="the run's result", max_bytes=max_bytes)
    return dict(plain)


def error_option(
    error: BaseException | Mapping[str, Any] | str | None, status: RunStatus
) -> tuple[StepError | None, dict[str, Any] | None]:
    """A tracked run's error, and what it tells beyond type, message and traceback.

    An exception gives its class, message and traceback; a mapping its ``type``,
    ``message`` and ``traceback``, every other key (``details``, ``timestamp``,
    ...) kept as details; text is the message.
    """
    if error is None:
        return None, None
    if status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise ParamError(f"error goes with status failed or cancelled, not {status.value}")
    if isinstance(error, BaseException):
        text = "".join(traceback.format_exception(error)) if error.__traceback__ else None
        return StepError.of(error, traceback=text), None
    if isinstance(error, str):
        return StepError("Error", error), None
    if not isinstance(error, Mapping):
        raise ParamError(
            f"error must be an exception, a mapping (type, message, details, ...) or text, "
            f"got {type(error).__name__}"
        )
    rest = {str(k): v for k, v in error.items() if k not in ("type", "message", "traceback")}
    details = rest.pop("details", None)
    extra = dict(details) if isinstance(details, Mapping) else {}
    if details is not None and not isinstance(details, Mapping):
        extra["details"] = details
    extra.update(rest)
    plain, _ = to_json(extra, what="the run's error details", max_bytes=64 * 1024)
    trace = error.get("traceback")
    found = StepError(
        type=str(error.get("type") or "Error"),
        message=str(error.get("message") or ""),
        traceback=None if trace is None else str(trace),
    )
    return found, dict(plain) or None


def task_count_option(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParamError(f"task_count must be a whole number, 0 or more, got {value!r}")
    return value


def workflow_hash_option(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_HASH_CHARS:
        raise ParamError(
            f"workflow_hash must be text of 1 to {MAX_HASH_CHARS} characters, got {value!r}"[:300]
        )
    return value.strip()
