"""``@legato.task`` and the registry."""

from __future__ import annotations

import asyncio
import importlib.machinery
import sys
import types
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


def in_module(module: str, name: str = "extract") -> Callable[..., Any]:
    fn = make(name)
    fn.__module__ = module
    return fn


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("etl", "etl.extract"),
        ("01_etl", "01_etl.extract"),
        ("my-flow", "my-flow.extract"),
        ("my flow", "my_flow.extract"),
        ("flow+v2", "flow_v2.extract"),
        ("ünï", "_n_.extract"),
        (".hidden", "_hidden.extract"),
        ("-dash", "_dash.extract"),
        ("pkg.sub.mod", "pkg.sub.mod.extract"),
    ],
)
def test_default_names_are_valid_for_any_module_name(module: str, expected: str) -> None:
    registry = TaskRegistry()
    assert default_task_name(in_module(module)) == expected
    assert task(registry=registry)(in_module(module)).name == expected
    assert registry.names() == [expected]


@pytest.mark.parametrize(
    ("file", "spec_name", "expected"),
    [
        ("/work/flows/etl.py", None, "etl.extract"),  # python etl.py
        ("/work/flows/01_etl.py", None, "01_etl.extract"),
        ("/work/flows/my-flow.py", None, "my-flow.extract"),
        ("<stdin>", None, "main.extract"),  # python - < flow.py
        ("<string>", None, "main.extract"),
        (None, None, "main.extract"),  # python -c, the interactive prompt
        ("/work/myapp/flows.py", "myapp.flows", "myapp.flows.extract"),  # python -m myapp.flows
    ],
)
def test_default_names_of_a_script(
    monkeypatch: pytest.MonkeyPatch, file: str | None, spec_name: str | None, expected: str
) -> None:
    main = types.ModuleType("__main__")
    if file is not None:
        main.__file__ = file
    main.__spec__ = None if spec_name is None else importlib.machinery.ModuleSpec(spec_name, None)
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert default_task_name(in_module("__main__")) == expected
    assert task(registry=TaskRegistry())(in_module("__main__")).name == expected


def test_a_function_without_a_valid_default_name_is_told_how_to_name_it() -> None:
    with pytest.raises(DefinitionError) as info:
        task(registry=TaskRegistry())(in_module("etl", "<lambda>"))
    assert str(info.value) == (
        "etl.<lambda> has no valid default task name ('etl.<lambda>' is not: letters, digits "
        "and _ . : / @ -, starting with a letter, digit or _); give the task a name with "
        '@task(name="...")'
    )
    named = task(name="etl.anonymous", registry=TaskRegistry())(in_module("etl", "<lambda>"))
    assert named.name == "etl.anonymous"


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
        ({"priority": 10}, "priority must be an int from 0 to 9, got 10"),
        ({"priority": -1}, "priority must be an int from 0 to 9, got -1"),
        ({"priority": True}, "priority must be an int from 0 to 9, got True"),
        ({"priority": 1.0}, "priority must be an int from 0 to 9, got 1.0"),
        ({"priority": "3"}, "priority must be an int from 0 to 9, got '3'"),
        ({"timeout": "5x"}, "timeout: expected a duration such as '30s', '5m', '1h30m'"),
        ({"timeout": 0}, "timeout: a duration must be more than zero, got 0"),
        ({"timeout": "0s"}, "timeout: a duration must be more than zero, got '0s'"),
        ({"timeout": "inf"}, "timeout: a duration must be a finite number of seconds, got 'inf'"),
        (
            {"timeout": float("nan")},
            "timeout: a duration must be a finite number of seconds, got nan",
        ),
        ({"retries": -1}, "retries must be an int from 0 to 999, got -1"),
        ({"retries": 1000}, "retries must be an int from 0 to 999, got 1000"),
        ({"retries": True}, "retries must be an int from 0 to 999, got True"),
        ({"retries": 1.5}, "retries must be an int from 0 to 999, got 1.5"),
        ({"backoff": "random"}, "invalid retry settings: backoff: Input should be 'fixed'"),
        ({"retry_delay": "later"}, "retry_delay: expected a duration such as '30s'"),
        ({"retry_delay": -1}, "retry_delay: a duration cannot be negative, got -1"),
        (
            {"retry_delay": "nan"},
            "retry_delay: a duration must be a finite number of seconds, got 'nan'",
        ),
        (
            {"max_retry_delay": "inf"},
            "max_retry_delay: a duration must be a finite number of seconds, got 'inf'",
        ),
        (
            {"max_retry_delay": "1e999"},
            "max_retry_delay: a duration must be a finite number of seconds, got '1e999'",
        ),
        ({"max_retry_delay": None}, "max_retry_delay: expected a duration such as '30s', got None"),
        (
            {"name": "bad name"},
            "task name 'bad name' is not valid (letters, digits and _ . : / @ -, starting with "
            'a letter, digit or _); give the task a valid name with @task(name="...")',
        ),
        ({"name": "-x"}, "task name '-x' is not valid"),
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


def test_bad_settings_name_the_task_and_the_setting() -> None:
    with pytest.raises(DefinitionError) as info:
        task(name="etl.load", registry=TaskRegistry(), max_retry_delay="inf")(make())
    assert str(info.value) == (
        "task etl.load: max_retry_delay: a duration must be a finite number of seconds, got 'inf'"
    )
    with pytest.raises(DefinitionError) as info:
        task(registry=TaskRegistry(), retries=-2)(make("flaky"))
    assert str(info.value) == f"task {__name__}.flaky: retries must be an int from 0 to 999, got -2"
    assert "max_attempts" not in str(info.value)


def test_zero_retry_delays_are_allowed() -> None:
    t = task(name="unit.tasks.eager", registry=TaskRegistry(), retries=999, retry_delay=0)(make())
    assert t.retry == RetryPolicy(max_attempts=1000, delay=0)


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
