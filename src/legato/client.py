"""``Client``: start, inspect and wait for runs. Needs no worker runtime.

Everything a run needs is decided here, before the one transaction that
stores it: the spec is validated, tasks are looked up, params are bound and
checked, and each step's policy is resolved. Bad input raises before
anything is written. Its methods for calling one task without a workflow
come from :mod:`legato.standalone`, those for runs tracked from outside from
:mod:`legato.tracking`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from typing import Any

from legato.catalog import find_in_conf, find_workflow
from legato.config import Settings
from legato.define.builder import Workflow
from legato.define.tasks import Task, TaskRegistry, default_registry
from legato.define.validate import known_tasks
from legato.engine.clock import Clock
from legato.engine.planner import TaskDefaults, plan_new_run
from legato.errors import (
    ConflictError,
    DefinitionError,
    ParamError,
    RunNotFoundError,
    UnknownTaskError,
    WaitTimeout,
)
from legato.model.definitions import Definition, DeployResult
from legato.model.logs import LogLine
from legato.model.operations import BulkResult
from legato.model.retention import PruneResult, Retention
from legato.model.runs import Event, Run, StepRun
from legato.model.search import RunFilter, RunPage, limit_option, order_option
from legato.model.spec import WorkflowSpec
from legato.model.states import RunStatus, StepStatus
from legato.options import logical_date_option, moment_option, seconds_option
from legato.options import tags_option as _tags
from legato.payload import to_json
from legato.query import parse_query
from legato.standalone import CallSpecs, StandaloneCalls
from legato.store import Store, open_store
from legato.store.base import NewDefinition, NewRun
from legato.tracking import TrackedRuns

__all__ = [
    "Client",
    "WorkflowLike",
    "logical_date_option",
    "moment_option",
    "seconds_option",
    "task_defaults",
    "unserved_note",
]

#: the most log lines one call of :meth:`Client.logs` returns
MAX_LOG_LINES = 10_000

#: a workflow object, a spec as a dict, or (to start one) a workflow's name
WorkflowLike = Workflow | WorkflowSpec | Mapping[str, Any] | str

#: the shortest run id prefix a reader may give instead of the whole id
MIN_ID_PREFIX = 8


class Client(StandaloneCalls, TrackedRuns):
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
        self._calls = CallSpecs()

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
                specs=self._handler_specs(spec),
            )
        )
        return run_id

    def start_many(
        self,
        workflow: WorkflowLike,
        params: Iterable[Mapping[str, Any] | None],
        *,
        version: str | None = None,
        tags: Mapping[str, str] | None = None,
        created_by: str | None = None,
        correlation_id: str | None = None,
        idempotency_keys: Iterable[str | None] | None = None,
        logical_date: datetime | date | str | None = None,
    ) -> list[str]:
        """Start one run of ``workflow`` per params, in one transaction; return their ids
        in the same order.

        Each run is checked as :meth:`start` checks it, all before anything is
        written: one bad params stores none. ``idempotency_keys`` (one per params,
        or None) make a repeat return the first run's id, as :meth:`start` does.
        Starting many runs this way costs a fraction of starting them one by one.
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
        every = [dict(p or {}) for p in params]
        keys = [None] * len(every) if idempotency_keys is None else list(idempotency_keys)
        if len(keys) != len(every):
            raise ParamError(
                f"idempotency_keys gives {len(keys)} keys for {len(every)} runs; give one "
                "per run (None for a run without one)"
            )
        when = logical_date_option(logical_date)
        defaults = self.task_defaults_for(spec, extra_tasks)
        tag_values = _tags(tags)
        steps = plan_new_run(spec.graph, defaults)
        handlers = self._handler_specs(spec)
        news = []
        for index, (given, key) in enumerate(zip(every, keys, strict=True)):
            try:
                bound = spec.bind_params(given)
            except ParamError as exc:
                raise ParamError(f"run {index} of {len(every)}: {exc}") from None
            plain_params, _ = to_json(
                bound,
                what=f"params of run {index} of {spec.label}",
                max_bytes=self.settings.max_payload_bytes,
            )
            news.append(
                NewRun(
                    spec=spec,
                    params=plain_params,
                    steps=steps,
                    tags=tag_values,
                    created_by=created_by,
                    correlation_id=correlation_id,
                    idempotency_key=key,
                    task_defaults=defaults,
                    logical_date=when,
                    specs=handlers,
                )
            )
        return [run_id for run_id, _ in self.store.create_runs(news)]

    def _handler_specs(self, spec: WorkflowSpec) -> tuple[WorkflowSpec, ...]:
        """The failure handler ``spec`` names, when a definition file of the conf path
        holds it: stored with the run, so the workers that end it find it by name as
        they find a deployed one. A file that cannot be read is left to that lookup."""
        handler = spec.on_failure
        if handler is None or handler.workflow is None:
            return ()
        try:
            found = find_in_conf(handler.workflow, handler.version, self.settings.conf_path)
        except DefinitionError:
            return ()
        return () if found is None else (found.spec,)

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
        self,
        run_id: str,
        reason: str = "cancelled by request",
        *,
        actor: str | None = None,
        run_failure_handler: bool = False,
    ) -> None:
        """End a pending, running or paused run as cancelled: steps not yet started never
        start, waits end, and its child runs are cancelled too. Steps running on a
        worker are asked to stop (``ctx.cancelled`` turns true within a heartbeat, an
        async task is cancelled) and are recorded cancelled when they stop; one that
        finishes before it learns of it keeps its result, which starts nothing.
        Its workflow's failure handler (``on_failure``) starts only with
        ``run_failure_handler``. A finished run raises :class:`~legato.OperationRefusedError`."""
        self.store.cancel(
            self.resolve_run_id(run_id),
            reason,
            actor=actor,
            run_failure_handler=run_failure_handler,
        )

    def pause(self, run_id: str, *, stop_now: bool = False, actor: str | None = None) -> None:
        """Pause a pending or running run (and its child runs): steps running finish,
        nothing new starts (no task is claimed, no timer fires, no map item or retry
        begins) until :meth:`resume`. ``stop_now`` also asks running steps to stop;
        they go back to the queue, their retries not spent."""
        self.store.pause(self.resolve_run_id(run_id), stop_now=stop_now, actor=actor)

    def resume(self, run_id: str, *, actor: str | None = None) -> None:
        """Resume a paused run (and its paused child runs): what was held starts, timers
        that fell due meanwhile fire. Legal only for a paused run whose parent is not."""
        self.store.resume(self.resolve_run_id(run_id), actor=actor)

    def retry(self, run_id: str, *, actor: str | None = None) -> list[str]:
        """Set a failed or cancelled run going from where it stopped: failed and cancelled
        steps run again with the inputs they were resolved with (inside maps only the
        failed items, loops from the failed iteration, a failed sub-workflow step with a
        new child run); completed steps keep their outputs. Returns the steps that run
        again. Legal only for a failed or cancelled top-level run."""
        return self.store.retry(self.resolve_run_id(run_id), actor=actor)

    def rerun(
        self,
        run_id: str,
        from_step: str,
        *,
        params: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> list[str]:
        """Run a completed, failed or cancelled run again from ``from_step`` (a step, or an
        instance such as ``fetch[3]``): it and everything downstream of it run afresh,
        their inputs resolved again, with ``params`` merged into the run's if given.
        Refused while a step of the run still runs. Returns the steps that run again."""
        return self.store.rerun(self.resolve_run_id(run_id), from_step, params=params, actor=actor)

    def restart(
        self, run_id: str, *, use_latest_version: bool = False, actor: str | None = None
    ) -> int:
        """Start a completed, failed or cancelled run again from the beginning (its history
        kept); with ``use_latest_version`` on the newest deployed (else stored) version
        of its workflow. Returns the run's new attempt number."""
        return self.store.restart(
            self.resolve_run_id(run_id), use_latest_version=use_latest_version, actor=actor
        )

    def skip(self, run_id: str, step: str, output: Any = None, *, actor: str | None = None) -> None:
        """Mark a step done with ``output`` and go on: a waiting, queued or suspended step
        of a going run, or a failed step of a failed or cancelled run (which then goes
        on as :meth:`retry` does)."""
        self.store.skip(self.resolve_run_id(run_id), step, output, actor=actor)

    # -- bulk operations -----------------------------------------------------------------

    def cancel_many(
        self,
        query: str | None = None,
        *,
        reason: str = "cancelled by request",
        actor: str | None = None,
        limit: int | None = None,
        run_failure_handler: bool = False,
        **filters: Any,
    ) -> BulkResult:
        """Cancel every run the search (``query`` and/or the filters :meth:`search` takes)
        finds; each is its own transaction, and those that cannot be cancelled are
        reported with why. ``limit`` bounds how many runs are touched; with
        ``run_failure_handler`` each run's failure handler starts."""
        return self._bulk(
            "cancel",
            self.matching_runs(query, limit=limit, **filters),
            lambda r: self.store.cancel(
                r, reason, actor=actor, run_failure_handler=run_failure_handler
            ),
        )

    def retry_many(
        self,
        query: str | None = None,
        *,
        actor: str | None = None,
        limit: int | None = None,
        **filters: Any,
    ) -> BulkResult:
        """Retry every run the search finds (see :meth:`retry`), reporting refusals."""
        return self._bulk(
            "retry",
            self.matching_runs(query, limit=limit, **filters),
            lambda r: self.store.retry(r, actor=actor),
        )

    def resume_many(
        self,
        query: str | None = None,
        *,
        actor: str | None = None,
        limit: int | None = None,
        **filters: Any,
    ) -> BulkResult:
        """Resume every run the search finds (see :meth:`resume`), reporting refusals."""
        return self._bulk(
            "resume",
            self.matching_runs(query, limit=limit, **filters),
            lambda r: self.store.resume(r, actor=actor),
        )

    def matching_runs(
        self, query: str | None = None, *, limit: int | None = None, **filters: Any
    ) -> list[Run]:
        """The runs a search finds (every page, newest first, without their steps), at most
        ``limit`` of them."""
        found: list[Run] = []
        for run in self.search_all(query, **filters):
            if limit is not None and len(found) >= limit:
                break
            found.append(run)
        return found

    def _bulk(self, operation: str, runs: list[Run], apply: Callable[[str], Any]) -> BulkResult:
        changed: list[str] = []
        refused: dict[str, str] = {}
        for run in runs:
            try:
                apply(run.id)
            except (ConflictError, RunNotFoundError) as exc:
                refused[run.id] = str(exc)
            else:
                changed.append(run.id)
        return BulkResult(operation, tuple(changed), refused)

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

    def search(
        self,
        query: str | None = None,
        *,
        status: str | RunStatus | Iterable[str | RunStatus] | None = None,
        workflow: str | None = None,
        version: str | None = None,
        tags: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
        created_by: str | None = None,
        started_after: datetime | date | str | None = None,
        started_before: datetime | date | str | None = None,
        text: str | Iterable[str] | None = None,
        order: str = "newest",
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """One page of the runs matching every filter given, newest first (``order="oldest"``
        for oldest first), without their steps; ``page.next_cursor`` reads on.

        ``status`` is one status or several (any of them); ``tags`` pairs must all
        be on the run; ``started_after``/``started_before`` bound its start (a
        datetime, a date or ISO 8601 text; naive means UTC); ``text`` (one term or
        several, 3 characters or more each) is found case-insensitively in its
        params, outputs or error. ``query`` is the same in the query string form
        (``status:failed workflow:etl tag:env=prod since:2d "timeout"``, see
        :mod:`legato.query`); a filter given both ways is an error.
        """
        given: dict[str, Any] = {
            name: value
            for name, value in (
                ("status", status),
                ("workflow", workflow),
                ("version", version),
                ("tags", tags),
                ("correlation_id", correlation_id),
                ("created_by", created_by),
                ("started_after", started_after),
                ("started_before", started_before),
                ("text", text),
            )
            if value is not None
        }
        if query is not None:
            parsed = parse_query(query)
            twice = sorted(set(parsed) & set(given))
            if twice:
                raise ParamError(
                    f"{', '.join(twice)} given both in the query {query!r} and as an argument"
                )
            given.update(parsed)
        where = RunFilter.of(**given)
        return self.store.search_runs(
            where, order=order_option(order), limit=limit_option(limit), cursor=cursor
        )

    def search_all(self, query: str | None = None, **filters: Any) -> Iterator[Run]:
        """Every run :meth:`search` finds, page after page (``limit`` is the page size)."""
        cursor = filters.pop("cursor", None)
        while True:
            page = self.search(query, cursor=cursor, **filters)
            yield from page.runs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- retention --------------------------------------------------------------------

    def prune(
        self,
        older_than: str | float,
        *,
        status: str | RunStatus | Iterable[str | RunStatus] | None = None,
        workflow: str | None = None,
        dry_run: bool = False,
        batch_size: int | None = None,
    ) -> PruneResult:
        """Delete finished runs (``status``: completed, failed or cancelled; all three by
        default) of ``workflow`` (any, by default) that finished more than ``older_than``
        ago (``"30d"`` or seconds), each with its child runs, steps, events and signals.

        Runs not finished, and trees holding one, are never touched. The work is done
        in short transactions of at most ``batch_size`` run trees. ``dry_run`` only
        counts what would go.
        """
        rule = Retention.of(
            older_than,
            statuses=[status] if isinstance(status, str | RunStatus) else status,
            workflow=workflow,
            batch_size=batch_size,
        )
        return self.store.prune_runs(rule, dry_run=dry_run)

    def apply_retention(
        self, rule: Retention | None = None, *, stop: Callable[[], bool] | None = None
    ) -> PruneResult | None:
        """Apply the automatic prune rule (``rule``, else this client's settings:
        ``LEGATO_RETENTION``) if its turn has come: at most once per ``rule.every``
        seconds across every process sharing the database. ``None`` when another
        process had the turn (or there is no rule)."""
        rule = rule or self.settings.retention
        if rule is None or not self.store.claim_turn("retention", rule.every):
            return None
        return self.store.prune_runs(rule, stop=stop)

    def history(self, run_id: str) -> list[Event]:
        """Every transition and operation of the run, oldest first: when, by whom (a
        worker's id or a user's name, where known) and with what details."""
        return self.store.run_events(run_id)

    def logs(
        self,
        run_id: str,
        step: str | None = None,
        *,
        attempt: int | None = None,
        after: int | None = None,
        limit: int = 1000,
    ) -> list[LogLine]:
        """What the run's tasks logged and printed, line by line, in the order it was stored.

        ``step`` (an instance key: ``fetch``, ``m[3].fetch``) and ``attempt`` narrow it to
        one step or attempt; ``after`` is the ``id`` of the last line already read (to
        page, or follow a running run); at most ``limit`` lines (up to 10,000). Child
        runs' lines are their own: ask for them by their run id. Raises
        :class:`RunNotFoundError` and, for a step the run does not have,
        :class:`ParamError`.
        """
        if step is not None and (not isinstance(step, str) or not step):
            raise ParamError(f"step must be a step's id, got {step!r}")
        for name, value, least in (("attempt", attempt, 1), ("after", after, 0)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < least
            ):
                raise ParamError(
                    f"{name} must be a whole number of at least {least}, got {value!r}"
                )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LOG_LINES:
            raise ParamError(
                f"limit must be a whole number from 1 to {MAX_LOG_LINES}, got {limit!r}"
            )
        return self.store.run_logs(run_id, step_id=step, attempt=attempt, after=after, limit=limit)

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


def task_defaults(task: Task) -> TaskDefaults:
    """What a registered task gives the steps that call it."""
    return TaskDefaults(
        retry=task.retry,
        timeout=task.timeout,
        queue=task.queue,
        priority=task.priority,
        max_lost_attempts=task.max_lost_attempts,
        flow=task.flow,
        schedule_to_start_timeout=task.schedule_to_start_timeout,
        heartbeat_timeout=task.heartbeat_timeout,
    )
