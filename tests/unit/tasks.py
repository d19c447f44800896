"""Tasks the unit tests build workflows from, in a registry of their own."""

from __future__ import annotations

from typing import Any

from legato import TaskRegistry, task

registry = TaskRegistry()


@task(name="unit.load", registry=registry)
def load(path: str, limit: int = 10, flag: bool = False) -> list[Any]:
    return [path] * min(limit, 3)


@task(name="unit.transform", registry=registry)
def transform(rows: Any) -> Any:
    return rows


@task(name="unit.pair", registry=registry)
def pair(a: Any, b: Any) -> list[Any]:
    return [a, b]


@task(name="unit.noarg", registry=registry)
def noarg() -> int:
    return 1


@task(name="unit.anykw", registry=registry)
def anykw(a: int, **extra: Any) -> dict[str, Any]:
    return {"a": a, **extra}


@task(name="unit.posonly", registry=registry)
def posonly(a: int, /) -> int:
    return a


@task(
    name="unit.tuned",
    registry=registry,
    retries=2,
    retry_delay="5s",
    timeout="1m",
    queue="slow",
    priority=5,
)
def tuned(x: Any = None) -> Any:
    return x


def plain(x: Any) -> Any:
    """Not a task: builders must refuse it."""
    return x
