"""``legato worker``: import task modules and serve their steps until stopped."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from legato.cli.loading import load_module
from legato.cli.options import UrlOption, duration_option
from legato.cli.output import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    configure_logging,
    exit_now,
    redact_url,
    user_errors,
)
from legato.client import Client
from legato.config import Settings
from legato.define.tasks import BUILTIN_TASKS, default_registry
from legato.errors import ConfigError
from legato.worker.pools import check_pool
from legato.worker.worker import Worker, steps

__all__ = ["worker"]

log = logging.getLogger("legato.cli")


def worker(
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            "-i",
            metavar="MODULE_OR_FILE",
            help="A module (myapp.tasks) or file (path/to/tasks.py) defining tasks; repeatable. "
            "Default: LEGATO_IMPORTS (comma or space separated).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, metavar="N", help="Steps run at once.")
    ] = 4,
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            "-q",
            metavar="QUEUE",
            help="Serve only this queue (repeatable). Default: every queue the tasks use.",
            show_default=False,
        ),
    ] = None,
    lease: Annotated[
        str,
        typer.Option(
            "--lease",
            metavar="DURATION",
            help="How long a claimed step stays this worker's without a heartbeat "
            "(30s, 2m, ...); heartbeats renew it every third of that.",
        ),
    ] = "30s",
    pool: Annotated[
        str,
        typer.Option(
            "--pool",
            metavar="thread|process|asyncio",
            help="Where plain-function tasks run: threads; child processes (for CPU-bound "
            "tasks: a timeout kills the call's process); asyncio serves async def tasks only.",
        ),
    ] = "thread",
    url: UrlOption = None,
) -> None:
    """Run steps from the database until SIGTERM or Ctrl-C.

    The first signal stops claiming and lets running steps finish (for up to
    30 seconds); a second one hands running steps back to the queue at once,
    where another worker picks them up, and quits.
    """
    configure_logging(logging.INFO)
    with user_errors():
        lease_seconds = duration_option(lease, "--lease", allow_zero=False)
        settings = Settings.load(url=url, imports=tuple(imports) if imports else None)
        for source in settings.imports:
            load_module(source)
        if not any(t.name not in BUILTIN_TASKS for t in default_registry) and not (
            settings.allow_shell
        ):
            imported = ", ".join(settings.imports) or "nothing"
            raise ConfigError(
                f"no tasks are registered (imported: {imported}); name the modules that "
                "define them with --import myapp.tasks or --import path/to/tasks.py "
                "(or LEGATO_IMPORTS)"
            )
        kind = check_pool(pool, default_registry)  # before the database is opened
        client = Client(settings.url)
        try:
            runner = Worker(
                client,
                queues=queues or None,
                concurrency=concurrency,
                lease=lease_seconds or 30.0,
                pool=kind,
                # the children import what this process imported, as it was named
                imports=settings.imports or None,
            )
        except BaseException:
            client.close()
            raise
    log.info(
        "database %s; %d tasks: %s",
        redact_url(client.url),
        len(default_registry),
        ", ".join(default_registry.names()),
    )
    code = EXIT_OK
    try:
        runner.run()
    except KeyboardInterrupt:
        log.warning(
            "worker stopped at once; %s handed back to the queue",
            steps(runner.handed_back, "running step"),
        )
        code = EXIT_INTERRUPTED
    finally:
        runner.close()
        client.close()
    log.info("worker stopped")
    exit_now(code)
