"""``@legato.task`` and the registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from legato import RetryPolicy, Task, TaskRegistry, task
from legato.define.tasks import default_registry, default_task_name
from legato.errors import DefinitionError, UnknownTaskError


def make(name: str = "fn") -> Callable[..., Any]:
    def fn(x: int = 1) -> int:
        return x + 1

    fn.__name__ = fn.__qualname__ = name
    return fn


def test_default_name_is_module_and_qualname() -> None:
    registry = TaskRegistry()

    @task(registry=registry)
    def hello() -> str:
        return "hi"

    assert hello.name == f"{__name__}.test_default_name_is_module_and_qualname.hello"
    assert default_task_name(make("plain")) == f"{__name__}.plain"
    assert registry.get(hello.name) is hello
    assert hello.name in registry
    assert registry.names() == [hello.name]
    assert list(registry) == [hello] and len(registry) == 1


def test_bare_decorator_and_explicit_name() -> None:
    registry = TaskRegistry()
    bare = task(make("bare"))
    named = task(name="unit.tasks.named", registry=registry)(make("other"))
    try:
        assert isinstance(bare, Task)
        assert bare.name == f"{__name__}.bare"
        assert bare.name in default_registry
        assert named.name == "unit.tasks.named"
        assert registry.names() == ["unit.tasks.named"]
        assert "unit.tasks.named" not in default_registry
    finally:
        default_registry._tasks.pop(bare.name, None)


def test_an_empty_registry_given_is_used() -> None:
    registry = TaskRegistry()
    assert not registry  # empty, hence falsy: it must still be the one used
    created = task(name="unit.tasks.empty_registry", registry=registry)(make())
    assert registry.get("unit.tasks.empty_registry") is created
    assert "unit.tasks.empty_registry" not in default_registry


def test_defaults_of_a_task() -> None:
    t = task(name="unit.tasks.defaults", registry=TaskRegistry())(make())
    assert t.retry == RetryPolicy(max_attempts=1)
    assert (t.timeout, t.queue, t.priority) == (None, "default", 0)


def test_settings_are_parsed() -> None:
    t = task(
        name="unit.tasks.tuned",
        registry=TaskRegistry(),
        retries=3,
        backoff="linear",
        retry_delay="2s",
        max_retry_delay="1m",
        jitter=False,
        retry_on=[ValueError, "pkg.Custom"],
        timeout="1h30m",
        queue="slow",
        priority=9,
    )(make())
    assert t.retry == RetryPolicy(
        max_attempts=4,
        backoff="linear",
        delay=2,
        max_delay=60,
        jitter=False,
        retry_on=("ValueError", "pkg.Custom"),
    )
    assert (t.timeout, t.queue, t.priority) == (5400.0, "slow", 9)


def test_same_name_for_another_function_is_refused() -> None:
    registry = TaskRegistry()
    first = task(name="unit.tasks.dup", registry=registry)(make("one"))
    with pytest.raises(DefinitionError) as info:
        task(name="unit.tasks.dup", registry=registry)(make("two"))
    assert str(info.value) == (
        f"task name 'unit.tasks.dup' is already registered for {__name__}.one; "
        f"{__name__}.two needs another name (task(name=...))"
    )
    assert registry.get("unit.tasks.dup") is first


def test_registering_the_same_function_again_replaces_it() -> None:
    registry = TaskRegistry()
    fn = make("again")
    task(name="unit.tasks.again", registry=registry)(fn)
    second = task(name="unit.tasks.again", registry=registry, retries=1)(fn)
    assert registry.get("unit.tasks.again") is second
    assert len(registry) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 10}, "priority must be 0-9, got 10"),
        ({"priority": -1}, "priority must be 0-9, got -1"),
        ({"timeout": "5x"}, "timeout: expected a duration such as '30s', '5m', '1h30m'"),
        ({"retries": -1}, "invalid retry settings: max_attempts: Input should be greater"),
        ({"backoff": "random"}, "invalid retry settings: backoff: Input should be 'fixed'"),
        ({"retry_delay": "later"}, "invalid retry settings: delay: retry delay: expected"),
        ({"name": "bad name"}, "task name 'bad name' must match"),
        (
            {"retry_on": [123]},
            "invalid retry settings: retry_on takes exception classes or their names, got 123",
        ),
        (
            {"retry_on": [dict]},
            "retry_on takes exception classes or their names, got <class 'dict'>",
        ),
    ],
)
def test_bad_settings(options: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        task(registry=TaskRegistry(), **options)(make())
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_task_cannot_be_wrapped_twice() -> None:
    t = task(name="unit.tasks.twice", registry=TaskRegistry())(make())
    with pytest.raises(DefinitionError, match=r"unit.tasks.twice is already a task"):
        task(registry=TaskRegistry())(t)
    with pytest.raises(DefinitionError, match="@task needs a function, got 5"):
        task(registry=TaskRegistry())(5)  # type: ignore[arg-type]


def test_task_objects_call_the_function() -> None:
    registry = TaskRegistry()

    @task(name="unit.tasks.sync", registry=registry)
    def add(a: int, b: int = 2) -> int:
        """Adds."""
        return a + b

    @task(name="unit.tasks.async", registry=registry)
    async def later(a: int) -> int:
        return a * 2

    assert add(1) == 3 and add(1, b=5) == 6
    assert add.__doc__ == "Adds." and add.__wrapped__.__name__ == "add"
    assert not add.is_async and later.is_async
    assert asyncio.run(later(4)) == 8
    assert add.takes_arguments and [p.name for p in add.keyword_params()] == ["a", "b"]
    assert not add.takes_any_keywords
    assert repr(add) == "<Task unit.tasks.sync>"


def test_unknown_task_names_what_is_registered() -> None:
    registry = TaskRegistry()
    with pytest.raises(UnknownTaskError) as info:
        registry.get("nope")
    assert str(info.value) == (
        "task 'nope' is not registered (registered: none); import the module that defines it, "
        "e.g. legato worker --import mymodule"
    )
    for i in range(10):
        task(name=f"unit.tasks.t{i}", registry=registry)(make(f"f{i}"))
    with pytest.raises(UnknownTaskError) as info:
        registry.get("nope")
    assert "(registered: unit.tasks.t0, unit.tasks.t1," in str(info.value)
    assert "unit.tasks.t7 and 2 more)" in str(info.value)
