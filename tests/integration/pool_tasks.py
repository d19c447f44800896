"""Tasks the process-pool tests run in child processes. Names start with ``pools.``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from legato import Context, TaskRegistry, task


@task(name="pools.crunch")
def crunch(n: int) -> dict[str, Any]:
    """CPU-bound work; says which process did it."""
    total = sum(i * i for i in range(n))
    return {"pid": os.getpid(), "total": total}


@task(name="pools.sleeper", timeout=1.0, retries=1, retry_delay=0)
def sleeper(folder: str, seconds: float = 60) -> None:
    """Write this process's pid, then sleep far past the timeout."""
    Path(folder, f"{os.getpid()}.pid").touch()
    time.sleep(seconds)


@task(name="pools.reporter")
def reporter(ctx: Context, steps: int) -> dict[str, Any]:
    """Report progress and heartbeats from the child; return what it was told."""
    for done in range(1, steps + 1):
        ctx.progress(done, steps, f"step {done}")
        ctx.heartbeat({"done": done})
        time.sleep(0.05)
    return {"attempt": ctx.attempt, "step": ctx.step_id, "pid": os.getpid()}


@task(name="pools.fails")
def fails(message: str) -> None:
    raise ValueError(message)


@task(name="pools.talker")
def talker(ctx: Context, lines: int, word: str) -> int:
    """Print, log through the context and another logger, in the child."""
    print(f"printed in {os.getpid()}")
    ctx.logger.info("told %s", word)
    for n in range(lines):
        logging.getLogger("pools.talk").warning("line %d", n)
    return os.getpid()


def registry() -> TaskRegistry:
    """Only these tasks: a worker's children then import only this module."""
    found = TaskRegistry()
    for each in (crunch, sleeper, reporter, fails, talker):
        found.add(each)
    return found
