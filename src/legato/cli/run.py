"""``legato run``: start a run and work it in this process, drawing its progress live.

The run is stored like any other. A background thread works it (a
:class:`~legato.Worker` limited to this run) while the main thread polls and
draws, and stays free to take Ctrl-C: then running steps finish, the run is
left in the database, and ``legato worker`` can carry it on.
"""

from __future__ import annotations

import logging
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.text import Text

from legato.cli.display import RunProgress, format_duration
from legato.cli.loading import check_workflow, load_module, load_target, split_target
from legato.cli.options import ImportsOption, UrlOption, VerboseOption, duration_option
from legato.cli.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    configure_logging,
    error_line,
    exit_now,
    fail,
    print_json,
    redact_url,
    stderr,
    stdout,
    user_errors,
)
from legato.cli.params import build_params, parse_pairs
from legato.client import Client, signal_waits
from legato.config import Settings
from legato.embedded import work_until_finished
from legato.errors import DefinitionError, LegatoError, UnknownTaskError, WaitTimeout
from legato.files import SUFFIXES
from legato.model.runs import Run, StepRun
from legato.model.states import RunStatus, StepStatus
from legato.worker.worker import Worker

__all__ = ["run"]


def run(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The workflow: a definition file (flows/etl.yaml), path/to/file.py:NAME or "
            "package.module:NAME (NAME may be left out when the file defines one workflow), "
            "or a workflow's name (etl, or etl@2 for a version), looked for in the files of "
            "LEGATO_CONF_PATH (default ./workflows) first, then among the definitions "
            "deployed in the database, then imported as a module.",
            show_default=False,
        ),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="A run param as key=value (repeatable), typed as the workflow declares it; "
            "lists and dicts as JSON.",
        ),
    ] = None,
    params_json: Annotated[
        str | None,
        typer.Option(
            "--params-json",
            metavar="JSON",
            help="Params as one JSON object; -p values override it.",
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="KEY=VALUE", help="A tag as key=value (repeatable)."),
    ] = None,
    created_by: Annotated[
        str | None,
        typer.Option("--created-by", metavar="NAME", help="Who or what started the run."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Start at most one run per key; a repeat reuses that run.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, metavar="N", help="Steps run at once.")
    ] = 4,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            help="Stop waiting after this long (30s, 5m, 1h30m) and exit 124; "
            "the run stays in the database.",
        ),
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Do not draw the live progress display.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the outputs and errors.")
    ] = False,
    imports: ImportsOption = None,
    url: UrlOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run a workflow here and print its outputs as JSON.

    The tasks it calls must be importable here: a Python target brings its
    own; for a definition file or a workflow found by name, name the modules
    that define them (--import or LEGATO_IMPORTS).

    Exits 0 when the run completed, 1 when it failed or was cancelled, 2 on
    bad input (nothing is stored then), 124 on --timeout, 130 on Ctrl-C.
    """
    configure_logging(logging.INFO if verbose else logging.WARNING)
    try:
        # Everything is checked before the database is written: bad input stores nothing.
        with user_errors():
            wait_for = duration_option(timeout, "--timeout", allow_zero=False)
            settings = Settings.load(url=url, imports=tuple(imports) if imports else None)
            for module in settings.imports:
                load_module(module)
            workflow, found = load_target(target, settings)
            try:
                spec, _ = check_workflow(workflow, target)
            except DefinitionError as exc:
                if isinstance(exc.__cause__, UnknownTaskError):  # the tasks run here: say how
                    raise UnknownTaskError(
                        f"{exc}; give legato run the modules defining the tasks with "
                        "--import MODULE (or LEGATO_IMPORTS)"
                    ) from None
                raise
            params = build_params(spec, parse_pairs(param or [], "-p"), params_json)
            spec.bind_params(params)
            tags = parse_pairs(tag or [], "--tag")
            client = Client(url)
        with client:
            with user_errors():
                run_id = client.start(
                    workflow,
                    params,
                    tags=tags,
                    created_by=created_by,
                    idempotency_key=idempotency_key,
                )
            live = not (no_progress or quiet) and stdout().is_terminal and stderr().is_terminal
            if not (live or quiet):
                origin = ""
                if found is not None:
                    origin = (
                        f", deployed in {found.source}"
                        if found.deployed
                        else f" from {found.source}"
                    )
                stderr().print(
                    f"run {run_id} started ({spec.label}{origin})", style="dim", soft_wrap=True
                )
            # a worker needs what this process imported: the Python target, and --import's
            source = split_target(target).source
            python = found is None and Path(source).suffix.lower() not in SUFFIXES
            sources = list(
                dict.fromkeys([source, *settings.imports] if python else settings.imports)
            )
            resume = _resume_hint(client, run_id, sources)
            finished = _work(
                client, run_id, spec.label, concurrency, wait_for, live=live, resume=resume
            )
    except KeyboardInterrupt:
        stderr().print("interrupted", style="yellow")
        exit_now(EXIT_INTERRUPTED)
    _report(finished, verbose=verbose, quiet=quiet)


def _work(
    client: Client,
    run_id: str,
    label: str,
    concurrency: int,
    timeout: float | None,
    *,
    live: bool,
    resume: str,
) -> Run:
    worker = Worker(client, concurrency=concurrency, root_run_id=run_id, poll_interval=0.1)
    job = _Background(lambda: work_until_finished(client, run_id, timeout=timeout, worker=worker))
    console = stderr()
    progress = RunProgress(run_id, label, max_rows=max(5, console.height - 6))
    try:
        # Only the outputs go to stdout: whatever the tasks print goes to stderr.
        with redirect_stdout(sys.stderr), _live(progress, enabled=live):
            job.start()
            interval = 0.1
            while not job.finished(interval):
                if live:
                    began = time.monotonic()
                    with suppress(LegatoError):  # the worker reports database trouble
                        progress.update(client.get(run_id))
                    # A big run costs more to read: poll it less often.
                    interval = max(0.1, (time.monotonic() - began) * 10)
            if live and job.value is not None:
                progress.update(job.value)
    except KeyboardInterrupt:
        _stop(client, run_id, worker, job, resume)
    try:
        return job.outcome()
    except LegatoError as exc:
        if not isinstance(exc, WaitTimeout):
            fail(str(exc))
        error_line(str(exc))
        hint = f"the run stays in the database; to continue it, run:\n  {resume}"
        with suppress(LegatoError):
            for name in sorted(set(signal_waits(client.get(run_id)).values())):
                url = redact_url(client.url)
                answer = shlex.join(["legato", "runs", "signal", run_id, name, "--url", url])
                answer += " --payload"
                hint += f"\nand answer its signal with:\n  {answer} JSON"
        stderr().print(hint, soft_wrap=True, highlight=False)
        exit_now(EXIT_TIMEOUT)


def _resume_hint(client: Client, run_id: str, sources: list[str]) -> str:
    """The command that carries this run on: a worker for its tasks and every queue it uses."""
    command = ["legato", "worker"]
    for source in sources or ["MODULE"]:
        command += ["--import", source]
    command += ["--url", redact_url(client.url)]
    queues = sorted({step.queue for step in client.get(run_id).steps.values()})
    served = {task.queue for task in client.registry}
    if not set(queues) <= served:  # a step moved to a queue its task does not name
        for queue in sorted(set(queues) | served):
            command += ["--queue", queue]
    return shlex.join(command)


def _stop(client: Client, run_id: str, worker: Worker, job: _Background, resume: str) -> None:
    console = stderr()
    try:
        console.print(
            "interrupted: letting running steps finish (Ctrl-C again to quit now)", style="yellow"
        )
        worker.stop()
        while not job.finished(0.2):
            pass
    except KeyboardInterrupt:
        console.print("stopping now: handing running steps back to the queue", style="yellow")
        worker.stop(now=True)
        with suppress(KeyboardInterrupt):
            job.finished(15)  # one transaction hands them back; then leave at once
    try:
        run = client.get(run_id, with_steps=False)
        state = f"{run.status.value}, {run.steps_done}/{run.steps_total} steps done"
    except LegatoError:
        state = "status unknown"
    console.print(
        f"run {run_id} is left in the database ({state}); to continue it, run:\n  {resume}",
        soft_wrap=True,
        highlight=False,
    )
    exit_now(EXIT_INTERRUPTED)


def _report(run: Run, *, verbose: bool, quiet: bool) -> None:
    console = stderr()
    if run.status is RunStatus.COMPLETED:
        if not quiet:
            console.print(
                f"[green]✓[/] run {run.id} completed in {format_duration(run.duration)} "
                f"({run.steps_done}/{run.steps_total} steps)",
                soft_wrap=True,
                highlight=False,
            )
        print_json(run.outputs if run.outputs is not None else {})
        return
    if run.status is not RunStatus.FAILED:
        fail(f"run {run.id} was {run.status.value}", EXIT_FAILED)
    step = _failed_step(run)
    error = (step.error if step else None) or run.error
    if verbose and error is not None and error.traceback:
        console.print(Text(error.traceback.rstrip(), style="dim"))
    where = what = ""
    if step is not None:
        where = (
            f" at step {step.step_id!r} "
            f"(task {step.task}, attempt {step.attempt}/{step.max_attempts})"
        )
    if error is not None:
        what = f": {error.type}: {error.message}"
    error_line(f"run {run.id} failed{where}{what}")
    if not quiet:
        console.print(f"details: legato runs show {run.id}", style="dim", soft_wrap=True)
        if run.failure_handler_run_id is not None:
            console.print(
                f"failure handler: run {run.failure_handler_run_id} started, for a worker "
                f"to run (legato runs show {run.failure_handler_run_id})",
                style="dim",
                soft_wrap=True,
            )
    raise typer.Exit(EXIT_FAILED)


def _failed_step(run: Run) -> StepRun | None:
    if run.error is not None and run.error.step in run.steps:
        return run.steps[run.error.step]
    return next((s for s in run.steps.values() if s.status is StepStatus.FAILED), None)


@contextmanager
def _live(progress: RunProgress, *, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    with Live(progress, console=stderr(), refresh_per_second=10, transient=False):
        yield


class _Background(threading.Thread):
    """Runs ``work`` in a thread; the caller collects its value or its exception."""

    def __init__(self, work: Callable[[], Run]) -> None:
        super().__init__(name="legato-run", daemon=True)
        self._work = work
        self._done = threading.Event()
        self.value: Run | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self._work()
        except BaseException as exc:
            self.error = exc
        finally:
            self._done.set()

    def finished(self, wait: float) -> bool:
        # An Event, not join(): a join interrupted by Ctrl-C can leave is_alive()
        # wrongly False (CPython 3.11), and the wait must survive that interrupt.
        return self._done.wait(wait)

    def outcome(self) -> Run:
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value
