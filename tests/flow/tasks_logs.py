"""Tasks the log capture tests run; names start with ``flow_logs.``."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading

from legato import Context, task

log = logging.getLogger("flow_logs.module")

#: set by a test to let ``waits_after_logging`` return
gates: dict[str, threading.Event] = {}
_lock = threading.Lock()


def gate(key: str) -> threading.Event:
    with _lock:
        return gates.setdefault(key, threading.Event())


@task(name="flow_logs.chatty")
def chatty(name: str, ctx: Context) -> str:
    ctx.logger.info("hello from %s", name)
    log.warning("module logger says %s", name)
    print(f"printed by {name}")
    print("to stderr", name, file=sys.stderr)
    try:
        raise ValueError(f"bad {name}")
    except ValueError:
        ctx.logger.exception("it failed")
    print("no newline at the end", end="")
    return name


@task(name="flow_logs.chatty_async")
async def chatty_async(name: str, ctx: Context) -> str:
    ctx.logger.info("hello from %s", name)
    await asyncio.sleep(0)
    print(f"printed by {name}")
    log.warning("module logger says %s", name)
    return name


@task(name="flow_logs.interleaved")
def interleaved(name: str, n: int, barrier_key: str) -> str:
    """Two of these run at once: each waits for the other between its lines."""
    barrier = _barrier(barrier_key)
    for i in range(n):
        print(f"{name} line {i}")
        logging.getLogger("flow_logs.interleaved").warning("%s record %d", name, i)
        barrier.wait(timeout=10)
    return name


@task(name="flow_logs.interleaved_async")
async def interleaved_async(name: str, n: int) -> str:
    for i in range(n):
        print(f"{name} line {i}")
        logging.getLogger("flow_logs.interleaved").warning("%s record %d", name, i)
        await asyncio.sleep(0.001)
    return name


_barriers: dict[str, threading.Barrier] = {}


def _barrier(key: str) -> threading.Barrier:
    with _lock:
        return _barriers.setdefault(key, threading.Barrier(2))


@task(name="flow_logs.waits_after_logging")
def waits_after_logging(key: str, ctx: Context) -> str:
    ctx.logger.info("early line of %s", key)
    if not gate(key).wait(timeout=20):
        raise TimeoutError("the test never opened the gate")
    ctx.logger.info("late line of %s", key)
    return key


@task(name="flow_logs.many_lines")
def many_lines(n: int, ctx: Context) -> int:
    for i in range(n):
        ctx.logger.info("line %d", i)
    return n


@task(name="flow_logs.prints_lines")
def prints_lines(n: int) -> int:
    for i in range(n):
        print(f"printed {i}")
    return n


@task(name="flow_logs.tells_secret")
def tells_secret(token: str, ctx: Context) -> str:
    ctx.logger.info("calling with token %s", token)
    print("header: Bearer", token)
    return "done"
