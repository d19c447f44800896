"""Runs tracked from outside: the application drives the work, legato keeps the record.

As Absurd's tracking client does, ``create_workflow_run`` records a run of a
workflow legato does not hold (its name and version follow the same rules as
any workflow's), ``update_workflow_run_status`` reports where it stands, and
``spawn_task`` queues tasks for legato's workers, linked to it. Such a run has
no steps of its own (its kind is ``external``) and a spec with no steps stands
in for its definition, so every reader, search and history shows it like any
run. :class:`TrackedRuns` holds the Client's methods; what the caller gives is
checked before anything is written.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from legato.define.tasks import Task
from legato.errors import ParamError
from legato.model.runs import StepError
from legato.model.spec import NAME_PATTERN, VERSION_PATTERN, WorkflowSpec
from legato.model.states import RunStatus
from legato.model.steps import check_name
from legato.options import moment_option, run_id_option, tags_option
from legato.payload import to_json
from legato.standalone import CallOptions
from legato.store.base import NewRun, TrackedStatus

if TYPE_CHECKING:
    from legato.config import Settings
    from legato.store import Store

__all__ = [
    "SpawnedTask",
    "TrackedRuns",
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


class TrackedRuns:
    """The :class:`~legato.Client` methods for runs tracked from outside."""

    store: Store
    settings: Settings

    if TYPE_CHECKING:  # StandaloneCalls'

        def _start_call(
            self,
            task: Task | str,
            args: list[Any],
            kwargs: Mapping[str, Any],
            options: CallOptions,
        ) -> str: ...

    def create_workflow_run(
        self,
        workflow_name: str,
        workflow_version: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        created_by: str | None = None,
        tags: Mapping[str, str] | None = None,
        workflow_hash: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        conn: Any = None,
    ) -> str:
        """Record a run of a workflow driven from outside legato; return its id.

        The run has no steps: its creator reports its status with
        :meth:`update_workflow_run_status` and may :meth:`spawn_task` tasks into it.
        Names and versions follow the rules of every workflow's. It starts
        ``pending``. ``conn`` as for :meth:`enqueue_with`.
        """
        spec = placeholder_spec(workflow_name, workflow_version)
        if inputs is not None and not isinstance(inputs, Mapping):
            raise ParamError(f"inputs must be a mapping, got {type(inputs).__name__}")
        plain, _ = to_json(
            dict(inputs or {}),
            what=f"inputs of {spec.label}",
            max_bytes=self.settings.max_payload_bytes,
        )
        new = NewRun(
            spec=spec,
            params=plain,
            steps=[],
            tags=tags_option(tags),
            created_by=created_by,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            kind="external",
            workflow_hash=workflow_hash_option(workflow_hash),
        )
        run_id, _ = self.store.create_run(new, conn=conn)
        return run_id

    def update_workflow_run_status(
        self,
        workflow_run_id: str | uuid.UUID,
        status: RunStatus | str,
        *,
        result: Mapping[str, Any] | None = None,
        error: BaseException | Mapping[str, Any] | str | None = None,
        started_at: datetime | str | None = None,
        completed_at: datetime | str | None = None,
        task_count: int | None = None,
        actor: str | None = None,
        conn: Any = None,
    ) -> None:
        """Report the status of a run made by :meth:`create_workflow_run`.

        Moves follow the run transition table: ``pending`` to ``running``,
        ``completed``, ``failed`` or ``cancelled``; ``running`` to those or
        ``paused``; ``paused`` to ``running`` or ``cancelled``; a finished run's
        status is final. The same unfinished status again changes only the other
        fields. ``result`` is the run's outputs by name; ``error`` (an exception,
        a mapping with ``type``, ``message``, ``details``... or text) goes with
        ``failed`` or ``cancelled``, and either cancels the tasks spawned into the
        run that have not finished. Times default to now (naive means UTC).
        ``conn`` as for :meth:`enqueue_with`. An illegal move, or a run driven by
        its steps, raises :class:`~legato.ConflictError` naming why.
        """
        target = status_option(status)
        found, details = error_option(error, target)
        change = TrackedStatus(
            status=target,
            outputs=result_option(result, self.settings.max_payload_bytes),
            error=found,
            error_details=details,
            started_at=moment_option(started_at, "started_at"),
            finished_at=moment_option(completed_at, "completed_at"),
            task_count=task_count_option(task_count),
            actor=actor,
        )
        self.store.set_tracked_status(run_id_option(workflow_run_id), change, conn=conn)

    def spawn_task(
        self,
        task_name: Task | str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        workflow_run_id: str | uuid.UUID | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        tags: Mapping[str, str] | None = None,
        created_by: str | None = None,
        conn: Any = None,
    ) -> SpawnedTask:
        """Queue a task (``params`` are its keyword arguments), linked to the run
        ``workflow_run_id`` made by :meth:`create_workflow_run` if given; return
        ``(task_id, run_id, workflow_run_id)``.

        The task runs as :meth:`enqueue` runs it, as a run of its own whose parent
        is the tracked run, so cancelling or failing that run cancels it. Its task
        id and run id are one id. ``headers`` are kept with it (its run's
        ``headers`` param), not passed to the task. ``conn`` as for
        :meth:`enqueue_with`.
        """
        if params is not None and not isinstance(params, Mapping):
            raise ParamError(f"params must be a mapping, got {type(params).__name__}")
        parent = None if workflow_run_id is None else run_id_option(workflow_run_id)
        options = CallOptions(
            queue=queue,
            priority=priority,
            idempotency_key=idempotency_key,
            tags=tags_option(tags),
            created_by=created_by,
            headers=headers,
            parent_run_id=parent,
            conn=conn,
        )
        run_id = self._start_call(task_name, [], dict(params or {}), options)
        return SpawnedTask(run_id, run_id, parent)
