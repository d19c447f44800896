"""``Client``: start, inspect and wait for runs. Needs no worker runtime.

Everything a run needs is decided here, before the one transaction that
stores it: the spec is validated, tasks are looked up, params are bound and
checked, and each step's policy is resolved. Bad input raises before
anything is written.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from legato import standalone, tracking
from legato.catalog import find_workflow
from legato.config import Settings
from legato.define.builder import Workflow
from legato.define.tasks import Task, TaskRegistry, default_registry
from legato.define.validate import known_tasks
from legato.durations import parse_duration
from legato.engine.clock import Clock
from legato.engine.planner import TaskDefaults, plan_new_run
from legato.errors import (
    DefinitionError,
    ParamError,
    RunFailedError,
    RunNotFoundError,
    UnknownTaskError,
    WaitTimeout,
)
from legato.model.definitions import Definition, DeployResult
from legato.model.runs import Event, Run, StepRun
from legato.model.spec import WorkflowSpec
from legato.model.states import RunStatus, StepStatus
from legato.payload import to_json
from legato.store import Store, open_store
from legato.store.base import NewDefinition, NewRun, TrackedStatus

__all__ = [
    "Client",
    "WorkflowLike",
    "logical_date_option",
    "moment_option",
    "seconds_option",
    "task_defaults",
    "unserved_note",
]

#: a workflow object, a spec as a dict, or (to start one) a workflow's name
WorkflowLike = Workflow | WorkflowSpec | Mapping[str, Any] | str

#: the shortest run id prefix a reader may give instead of the whole id
MIN_ID_PREFIX = 8


class Client:
    """A handle on one legato database.

    ``url`` is ``sqlite:///path.db`` or ``postgresql://...``; without it,
    ``LEGATO_URL``, else a SQLite file ``legato.db`` in the working directory.
    ``conf_path`` is where workflows started by name are looked for first (one
    folder, several, or several joined by ``os.pathsep``); without it,
    ``LEGATO_CONF_PATH``, else ``./workflows``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        registry: TaskRegistry | None = None,
        max_payload_bytes: int | None = None,
        migrate: bool = True,
        clock: Clock | None = None,
        store: Store | None = None,
        conf_path: str | os.PathLike[str] | tuple[str | os.PathLike[str], ...] | None = None,
    ) -> None:
        settings = Settings.load(url=url, max_payload_bytes=max_payload_bytes, conf_path=conf_path)
        self.settings = settings
        self.registry = registry if registry is not None else default_registry
        self.store = store or open_store(
            settings.url,
            clock=clock,
            max_payload_bytes=settings.max_payload_bytes,
            migrate=migrate,
        )
        #: specs of standalone task calls, by task and shape of call
        self._calls = standalone.CallSpecs()

    @property
    def url(self) -> str:
        return self.store.url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"<Client {self.url}>"

    # -- starting runs ---------------------------------------------------------

    def start(
        self,
        workflow: WorkflowLike,
        params: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
        tags: Mapping[str, str] | None = None,
        created_by: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        logical_date: datetime | date | str | None = None,
    ) -> str:
        """Store a new run and queue its first steps; return its id.

        ``workflow`` given by name is looked up by :meth:`find_workflow` (``version``
        picks one; the newest otherwise); this process needs none of its tasks' code
        when workers have registered them. ``logical_date`` is the time the run is
        for (``run.logical_date`` in expressions): a datetime, a date or ISO 8601
        text, read as UTC without an offset; by default the run's created time.
        A repeated ``idempotency_key`` returns the first run's id and starts nothing.
        """
        extra_tasks: dict[str, Task] = {}
        if isinstance(workflow, str):
            spec = self.find_workflow(workflow, version)
        elif version is not None:
            raise ParamError(
                f"version={version!r} picks a version of a workflow given by name; "
                "this one is given whole"
            )
        else:
            spec, extra_tasks = _as_spec(workflow)
        when = logical_date_option(logical_date)
        defaults = self.task_defaults_for(spec, extra_tasks)
        bound = spec.bind_params(dict(params or {}))
        plain_params, _ = to_json(
            bound, what=f"params of {spec.label}", max_bytes=self.settings.max_payload_bytes
        )
        tag_values = _tags(tags)
        steps = plan_new_run(spec.graph, defaults)
        run_id, _ = self.store.create_run(
            NewRun(
                spec=spec,
                params=plain_params,
                steps=steps,
                tags=tag_values,
                created_by=created_by,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
                task_defaults=defaults,
                logical_date=when,
            )
        )
        return run_id

    def find_workflow(self, name: str, version: str | None = None) -> WorkflowSpec:
        """The workflow ``name`` (at ``version``, else the newest): from the definition
        files of the conf path first, then from those deployed in this database.

        Not found is a :class:`~legato.WorkflowNotFoundError` naming where it looked.
        """
        return find_workflow(
            name,
            version,
            folders=self.settings.conf_path,
            store=self.store,
            url=self.url,
        ).spec

    # -- standalone tasks and runs tracked from outside (legato.standalone, legato.tracking)

    def enqueue(self, task: Task | str, /, *args: Any, **kwargs: Any) -> str:
        """Call one task on a worker without writing a workflow; return its run's id.

        ``task`` is a registered task or its name (then this process needs no code
        when workers registered it). ``args`` and ``kwargs`` go to the task, but for
        enqueue's own keywords (see :meth:`enqueue_with`): a task that takes one of
        those names is called through :meth:`enqueue_with`. The call is a run of a
        one-step workflow made for the task, with the task's retries, timeout, queue
        and priority; :meth:`result` waits for its output.
        """
        name, code = standalone.resolve_task(task, self.registry)
        kwargs, options = standalone.split_options(name, code, dict(kwargs))
        return self.enqueue_with(task, args, kwargs, **options)

    def enqueue_with(
        self,
        task: Task | str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | str | None = None,
        eta: datetime | date | str | None = None,
        idempotency_key: str | None = None,
        tags: Mapping[str, str] | None = None,
        created_by: str | None = None,
        correlation_id: str | None = None,
        conn: Any = None,
    ) -> str:
        """:meth:`enqueue` with the task's arguments apart from the options.

        ``queue`` and ``priority`` replace the task's; ``delay`` (seconds or a
        duration) or ``eta`` (a time; naive means UTC) holds the call back on a
        durable timer until then. A repeated ``idempotency_key`` returns the first
        call's run and starts nothing. ``conn``, the application's own connection
        to this database (psycopg or sqlite3), makes the start part of its open
        transaction: committed or rolled back with it.
        """
        delay_seconds = seconds_option(delay, "delay")
        options = standalone.CallOptions(
            queue=queue,
            priority=priority,
            delay=delay_seconds,
            eta=moment_option(eta, "eta"),
            idempotency_key=idempotency_key,
            tags=_tags(tags),
            created_by=created_by,
            correlation_id=correlation_id,
            conn=conn,
        )
        return self._start_call(task, list(args), kwargs or {}, options)

    def _start_call(
        self,
        task: Task | str,
        args: list[Any],
        kwargs: Mapping[str, Any],
        options: standalone.CallOptions,
    ) -> str:
        """Store the run of one task call, its spec built once per shape of call."""
        name, code = standalone.resolve_task(task, self.registry)
        if code is not None:
            standalone.check_call(code, args, kwargs)
        params = standalone.call_params(
            name, args, kwargs, options, max_bytes=self.settings.max_payload_bytes
        )
        extra = {name: code} if code is not None else {}
        spec, defaults = self._calls.get(
            standalone.shape_of(name, args, options),
            lambda spec: self.task_defaults_for(spec, extra),
            local=code is not None,
        )
        new = NewRun(
            spec=spec,
            params=spec.bind_params(params),
            steps=plan_new_run(spec.graph, defaults),
            tags=dict(options.tags or {}),
            created_by=options.created_by,
            correlation_id=options.correlation_id,
            idempotency_key=options.idempotency_key,
            task_defaults=defaults,
            kind="task",
            parent_run_id=options.parent_run_id,
            root_run_id=options.parent_run_id,  # an external run is its own root
        )
        run_id, _ = self.store.create_run(new, conn=options.conn)
        return run_id

    def result(
        self, run_id: str, *, timeout: float | None = None, poll_interval: float = 0.25
    ) -> Any:
        """What a run gave, once it has finished: a standalone task's output (see
        :meth:`enqueue`), any other run's outputs.

        Waits up to ``timeout`` seconds or a duration (``None``: as long as it takes;
        ``0``: not at all), then raises :class:`WaitTimeout`. A run that failed or
        was cancelled raises :class:`~legato.RunFailedError` carrying its error.
        """
        run = self.wait(run_id, timeout=timeout, poll_interval=poll_interval)
        if run.status is RunStatus.COMPLETED:
            if run.kind == "task":
                return (run.outputs or {}).get(standalone.RESULT)
            return run.outputs
        calls = [s.task for s in run.steps.values() if s.kind == "task"]
        what = f"task {calls[0]}" if run.kind == "task" and calls else f"workflow {run.workflow}"
        raise RunFailedError(
            f"run {run.id} ({what}) {run.status.value}: {run.error or 'no error recorded'}",
            run_id=run.id,
            status=run.status.value,
            error=run.error,
        )

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
        spec = tracking.placeholder_spec(workflow_name, workflow_version)
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
            tags=_tags(tags),
            created_by=created_by,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            kind="external",
            workflow_hash=tracking.workflow_hash_option(workflow_hash),
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
        target = tracking.status_option(status)
        found, details = tracking.error_option(error, target)
        change = TrackedStatus(
            status=target,
            outputs=tracking.result_option(result, self.settings.max_payload_bytes),
            error=found,
            error_details=details,
            started_at=moment_option(started_at, "started_at"),
            finished_at=moment_option(completed_at, "completed_at"),
            task_count=tracking.task_count_option(task_count),
            actor=actor,
        )
        self.store.set_tracked_status(_run_id(workflow_run_id), change, conn=conn)

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
    ) -> tracking.SpawnedTask:
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
        parent = None if workflow_run_id is None else _run_id(workflow_run_id)
        options = standalone.CallOptions(
            queue=queue,
            priority=priority,
            idempotency_key=idempotency_key,
            tags=_tags(tags),
            created_by=created_by,
            headers=headers,
            parent_run_id=parent,
            conn=conn,
        )
        run_id = self._start_call(task_name, [], dict(params or {}), options)
        return tracking.SpawnedTask(run_id, run_id, parent)

    # -- deployed definitions ---------------------------------------------------------

    def deploy(
        self,
        workflow: WorkflowLike,
        *,
        source: str | None = None,
        deployed_by: str | None = None,
    ) -> DeployResult:
        """Deploy a workflow version, so anyone can start it by name without its file or
        code. Its tasks are not needed here (workers bring them).

        Deploying the same name, version and content again changes nothing
        (``unchanged``); other content under a deployed name and version raises
        :class:`~legato.DefinitionConflictError`: bump the version instead.
        """
        [result] = self.deploy_all([(workflow, source)], deployed_by=deployed_by)
        return result

    def deploy_all(
        self,
        workflows: Iterable[tuple[WorkflowLike, str | None]],
        *,
        deployed_by: str | None = None,
    ) -> list[DeployResult]:
        """Deploy several workflows, each with its source (a file, or ``None``), in one
        transaction: every one is checked first, then all are stored or none is."""
        new = []
        for workflow, source in workflows:
            if isinstance(workflow, str):
                raise DefinitionError(
                    f"deploy takes a workflow, not a name ({workflow!r}); to deploy a "
                    "definition file, read it with legato.files.load_file or run legato deploy"
                )
            spec, _ = _as_spec(workflow)
            new.append(NewDefinition(spec, source, deployed_by))
        statuses = self.store.deploy_all(new)
        return [
            DeployResult(d.spec.name, d.spec.version, d.spec.content_hash, status)
            for d, status in zip(new, statuses, strict=True)
        ]

    def definitions(self, name: str | None = None) -> list[Definition]:
        """Deployed definitions (of the workflow ``name``, if given), by name, newest first."""
        return self.store.definitions(name)

    def task_defaults_for(
        self, spec: WorkflowSpec, extra: Mapping[str, Task] | None = None
    ) -> dict[str, TaskDefaults]:
        """The defaults of every task the spec calls: from the code where this process has
        it, else as the workers that have it recorded them.

        A task neither is known here nor was ever registered by a worker is an
        error naming it: a run of it could only wait.
        """
        tasks, missing = known_tasks(spec, self.registry, extra)
        defaults = {name: task_defaults(task) for name, task in tasks.items()}
        if missing:
            recorded = self.store.recorded_task_defaults(sorted(missing))
            defaults.update(recorded)
            unknown = {name: where for name, where in missing.items() if name not in recorded}
            if unknown:
                raise UnknownTaskError(
                    f"workflow {spec.label}: "
                    + "; ".join(
                        f"step {where!r} calls task {name!r}, which is not registered here "
                        "and no worker has registered it"
                        for name, where in sorted(unknown.items())
                    )
                    + f" (registered here: {', '.join(self.registry.names()[:10]) or 'none'}; "
                    "import the module that defines it, or start a worker that does)"
                )
        return defaults

    def signal(
        self, run_id: str, name: str, payload: Any = None, *, sent_by: str | None = None
    ) -> str:
        """Send the run a signal: the step waiting for ``name`` completes with ``payload``.

        A signal sent before any step waits for it is kept for the first that does.
        Returns the key of the step it completed, or ``"kept"``. A signal to an
        unknown or finished run is an error.
        """
        return self.store.signal(self.resolve_run_id(run_id), name, payload, sent_by=sent_by)

    def cancel(
        self, run_id: str, reason: str = "cancelled by request", *, actor: str | None = None
    ) -> None:
        """End an unfinished run as cancelled: steps not yet started never start, waits
        end, and its child runs are cancelled too. Steps already running on a worker
        finish, and their results are kept but start nothing. A finished or unknown
        run is an error."""
        self.store.cancel(self.resolve_run_id(run_id), reason, actor=actor)

    def update_variables(
        self, run_id: str, values: Mapping[str, Any], *, actor: str | None = None
    ) -> dict[str, Any]:
        """Merge ``values`` into the run's variables (``vars`` in expressions); return them."""
        return self.store.update_variables(self.resolve_run_id(run_id), values, actor=actor)

    def execute(
        self,
        workflow: WorkflowLike,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        **start_options: Any,
    ) -> Run:
        """Start a run (of a workflow, or of one given by name) and wait for it to finish
        (workers run elsewhere)."""
        timeout = seconds_option(timeout, "timeout")
        run_id = self.start(workflow, params, **start_options)
        return self.wait(run_id, timeout=timeout)

    # -- reading runs ----------------------------------------------------------

    def get(self, run_id: str, *, with_steps: bool = True) -> Run:
        """The run with its steps, attempts, resolved inputs, outputs and errors."""
        return self.store.get_run(run_id, with_steps=with_steps)

    def resolve_run_id(self, text: str) -> str:
        """The full id of the one run whose id is ``text`` or starts with it (8+ characters).

        Raises :class:`RunNotFoundError` when no run matches and :class:`ParamError`
        when the prefix is too short or matches several runs.
        """
        text = text.strip().lower()
        if len(text) == 36:
            return text
        if len(text) < MIN_ID_PREFIX:
            raise ParamError(
                f"run id {text!r} is too short: give the whole id or at least its first "
                f"{MIN_ID_PREFIX} characters"
            )
        found = self.store.find_run_ids(text, limit=3)
        if not found:
            raise RunNotFoundError(f"no run has an id starting with {text!r}")
        if len(found) > 1:
            shown = ", ".join(found[:2]) + (", ..." if len(found) > 2 else "")
            raise ParamError(
                f"run id {text!r} is ambiguous: it begins several runs ({shown}); "
                "give more of the id"
            )
        return found[0]

    def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[Run]:
        """Runs, newest first (without their steps; ``get`` one for those)."""
        if limit < 0:
            raise ParamError(f"limit must be 0 or more, got {limit}")
        try:
            return self.store.list_runs(status=status, workflow=workflow, limit=limit)
        except ValueError:
            raise ParamError(
                f"unknown run status {status!r}; expected pending, running, paused, "
                "completed, failed or cancelled"
            ) from None

    def history(self, run_id: str) -> list[Event]:
        """Every transition of the run, oldest first."""
        return self.store.run_events(run_id)

    def wait(
        self, run_id: str, *, timeout: float | None = None, poll_interval: float = 0.25
    ) -> Run:
        """Block until the run finishes; raise :class:`WaitTimeout` after ``timeout`` seconds.

        ``timeout`` is seconds or a duration (``"30s"``); ``None`` waits as long as it takes.
        """
        timeout = seconds_option(timeout, "timeout")
        poll_interval = seconds_option(poll_interval, "poll_interval", allow_zero=False) or 0.25
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            run = self.get(run_id, with_steps=False)
            if run.finished:
                return self.get(run_id)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise WaitTimeout(self.still_running_message(run_id, timeout))
            pause = min(delay, poll_interval)
            if deadline is not None:
                pause = min(pause, deadline - now)
            time.sleep(max(pause, 0))
            delay *= 2

    def unserved_steps(self, run: Run) -> list[StepRun]:
        """Queued steps of ``run`` that no live worker serves (their task on their queue).

        Such a run would sit waiting for a worker that does not exist; readers
        say so instead of showing it ``pending`` without a word.
        """
        queued = [s for s in run.steps.values() if s.status is StepStatus.QUEUED]
        if not queued:
            return []
        workers = self.store.live_workers()
        return [s for s in queued if not any(w.serves(s.task, s.queue, run.id) for w in workers)]

    def still_running_message(self, run_id: str, waited: float | None) -> str:
        """Why a run is not finished yet, for a wait that gave up."""
        run = self.get(run_id)
        text = (
            f"run {run_id} is still {run.status.value} after {waited}s "
            f"({run.steps_done}/{run.steps_total} steps done)"
        )
        unserved = self.unserved_steps(run)
        if unserved:
            text += "; " + unserved_note(unserved)
        signals = signal_waits(run)
        if signals:
            text += "; " + ", ".join(
                f"step {key} waits for signal {name!r}" for key, name in signals.items()
            )
        return text


def signal_waits(run: Run) -> dict[str, str]:
    """The run's steps waiting for a signal, and the signal's name, by step key."""
    return {
        key: (step.waiting_for or "").removeprefix("signal:")
        for key, step in run.steps.items()
        if step.status is StepStatus.SUSPENDED and (step.waiting_for or "").startswith("signal:")
    }


def seconds_option(value: Any, name: str, *, allow_zero: bool = True) -> float | None:
    """A number of seconds or a duration, checked: finite, not negative (not zero if asked)."""
    try:
        return parse_duration(value, field=name, allow_zero=allow_zero)
    except ValueError as exc:
        raise ParamError(str(exc)) from None


def unserved_note(steps: list[StepRun]) -> str:
    """``no live worker serves ...``: what to start so these queued steps run."""
    pairs = sorted({(s.task, s.queue) for s in steps})
    listed = ", ".join(f"task {task} on queue {queue!r}" for task, queue in pairs)
    queues = sorted({queue for _, queue in pairs})
    flags = "" if queues == ["default"] else " " + " ".join(f"--queue {q}" for q in queues)
    return (
        f"no live worker serves {listed}; start one with: "
        f"legato worker --import <module defining the task>{flags}"
    )


def _as_spec(workflow: WorkflowLike) -> tuple[WorkflowSpec, dict[str, Task]]:
    if isinstance(workflow, Workflow):
        return workflow.spec, workflow.tasks
    if isinstance(workflow, WorkflowSpec):
        workflow.check()
        return workflow, {}
    if isinstance(workflow, Mapping):
        return WorkflowSpec.parse(dict(workflow)), {}
    raise DefinitionError(
        f"expected a legato.Workflow, a WorkflowSpec or a spec dict, got {type(workflow).__name__}"
    )


def logical_date_option(value: datetime | date | str | None) -> datetime | None:
    """A run's logical date as an aware UTC datetime; text is ISO 8601, naive means UTC."""
    return moment_option(value, "logical_date")


def moment_option(value: datetime | date | str | None, name: str) -> datetime | None:
    """A point in time given as ``name``, as an aware UTC datetime: a datetime, a date or
    ISO 8601 text, read as UTC without an offset."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ParamError(
                f"{name} {value!r} is not an ISO 8601 date or time "
                "(2024-05-01, 2024-05-01T06:00:00+02:00)"
            ) from None
    elif not isinstance(value, datetime):
        if not isinstance(value, date):
            raise ParamError(
                f"{name} must be a datetime, a date or ISO 8601 text, got {type(value).__name__}"
            )
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def task_defaults(task: Task) -> TaskDefaults:
    """What a registered task gives the steps that call it."""
    return TaskDefaults(
        retry=task.retry,
        timeout=task.timeout,
        queue=task.queue,
        priority=task.priority,
        max_lost_attempts=task.max_lost_attempts,
    )


def _run_id(value: Any) -> str:
    """A full run id (text or a ``uuid.UUID``) in its stored form."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise RunNotFoundError(f"no run with id {value!r} (not a run id)") from None


def _tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    if not tags:
        return {}
    bad = [k for k, v in tags.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ParamError(f"tags are text keys and values; these are not: {bad!r}")
    plain, _ = to_json(dict(tags), what="tags", max_bytes=64 * 1024)
    return plain
