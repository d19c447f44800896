"""Any spec, however it was built, written as a file and read back: the same spec."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from cli.helpers import Invoke
from legato import Workflow, WorkflowSpec
from legato.cli.loading import load_module
from legato.files import load_text, to_json_text, to_yaml
from legato.model.spec import RetryPolicy

from .conftest import TASKS

# Loaded by path, as the commands load it with --import, so its tasks register once.
_tasks = load_module(str(TASKS))
add, echo, beating = _tasks.add, _tasks.echo, _tasks.beating

ROOT = Path(__file__).parents[2]


def builder_workflows() -> list[tuple[str, WorkflowSpec]]:
    found: list[tuple[str, WorkflowSpec]] = []
    modules: list[ModuleType] = [
        load_module(str(ROOT / "examples" / "orders.py")),
        load_module(str(ROOT / "examples" / "etl.py")),
        load_module(str(ROOT / "tests" / "cli" / "flows.py")),
    ]
    for module in modules:
        for name, value in vars(module).items():
            if isinstance(value, Workflow):
                found.append((f"{module.__name__}.{name}", value.spec))
            elif isinstance(value, WorkflowSpec):
                found.append((f"{module.__name__}.{name}", value))
    return found


def every_option() -> WorkflowSpec:
    """A workflow setting every field a step can have, with text YAML likes to misread."""
    wf = Workflow("every_option", version="2.0-rc.1", description="all of it\nin two lines")
    n = wf.param("n", 3, type="int", description="how many")
    wf.param("tricky", type="str")
    first = wf.step(
        "first",
        add,
        a=n,
        b=2,
        retry=RetryPolicy(
            max_attempts=4,
            backoff="linear",
            delay=0.25,
            max_delay=90,
            jitter=False,
            retry_on=("ValueError",),
        ),
        timeout=1.5,
        queue="io",
        priority=7,
        max_lost_attempts=5,
        schedule_to_start_timeout="2m",
        description="adds",
    )
    texts = ["1e5", "0o17", "yes", "no", "null", "~", " padded ", "a: b", "- x", "#", "'q'", "ü"]
    wf.step(
        "second",
        echo,
        x={"texts": texts, "n": first.output, "big": 10**30, "float": 0.1, "none": None},
        when="${{ steps.first.output > 1 }}",
        continue_on_error=True,
    )
    wf.step("beats", beating, x=1, heartbeat_timeout=0.75, schedule_to_start_timeout=90)
    wf.sleep("nap", "1h30m", needs=["second"])
    wf.sleep("until", until="${{ run.created_at }}", needs=["nap"])
    wf.outputs(first=first.output, literal={"a": [1, 2.5, True, None]})
    return wf.spec


def file_workflows() -> list[tuple[str, WorkflowSpec]]:
    """Every workflow the YAML examples and the job tests define (shell allowed to read)."""
    from legato.files import load_file

    from .test_jobs_run import FAILING, FLOW

    found = [
        (f"examples/yaml/{path.name}", spec)
        for path in sorted((ROOT / "examples" / "yaml").glob("*.yaml"))
        for spec in load_file(path, allow_shell=True)
    ]
    found += [(spec.name, spec) for text in (FLOW, FAILING) for spec in load_text(text)]
    return found


def failure_handlers() -> list[tuple[str, WorkflowSpec]]:
    """Workflows naming a failure handler, and giving one whole with templated params."""
    named = Workflow("guarded", on_failure="cleanup")
    named.step("work", add, a=1, b=2)
    versioned = Workflow("guarded_v").failure_handler(
        "cleanup", version="1.10", params={"failed": "${{ run.id }}", "n": 3}
    )
    versioned.step("work", add, a=1, b=2)
    handler = Workflow("notify")
    handler.param("message", type="str")
    handler.step("say", echo, x=handler.param("message"))
    whole = Workflow("guarded_whole").failure_handler(
        handler, params={"message": "${{ run.workflow }} failed: ${{ run.error.message }}"}
    )
    whole.step("work", add, a=1, b=2)
    return [(wf.name, wf.spec) for wf in (named, versioned, whole)]


CASES = [
    *builder_workflows(),
    ("every_option", every_option()),
    *file_workflows(),
    *failure_handlers(),
]


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[c[0] for c in CASES])
def test_yaml_and_json_read_back_as_the_same_spec(name: str, spec: WorkflowSpec) -> None:
    for text, as_json in ((to_yaml(spec), False), (to_json_text(spec), True)):
        (back,) = load_text(text, f"{name}.export", json_syntax=as_json, allow_shell=True)
        assert back.canonical_json() == spec.canonical_json()
        assert back.content_hash == spec.content_hash


def test_exported_yaml_reads_as_people_write_it() -> None:
    text = to_yaml(every_option())
    assert "uses: files.add" in text
    assert "timeout: 1.5" in text
    assert "schedule_to_start_timeout: 2m" in text
    assert "heartbeat_timeout: 0.75" in text
    assert "max_delay: 1m30s" in text
    assert "sleep: 1h30m" in text
    assert "if: ${{ steps.first.output > 1 }}" in text
    assert "- '1e5'" in text  # YAML 1.2 would read it as a number
    assert "description: |-\n  all of it\n  in two lines" in text


def test_json_export_is_json() -> None:
    data = json.loads(to_json_text(every_option()))
    assert data["name"] == "every_option"
    assert data["steps"][0]["uses"] == "files.add"


def test_the_export_command_prints_what_reads_back(legato: Invoke, tmp_path: Path) -> None:
    orders = ROOT / "examples" / "orders.py"
    result = legato("export", f"{orders}:wf")
    assert result.exit_code == 0, result.output
    (back,) = load_text(result.stdout, "orders.yaml")
    assert back.content_hash == load_module(str(orders)).wf.spec.content_hash
    path = tmp_path / "orders.yaml"
    path.write_text(result.stdout)
    again = legato("export", str(path), "--format", "json")
    assert again.exit_code == 0, again.output
    (from_json,) = load_text(again.stdout, "orders.json", json_syntax=True)
    assert from_json.content_hash == back.content_hash


def test_a_builder_workflow_writes_itself_as_yaml() -> None:
    wf = Workflow("tiny")
    wf.step("a", echo, x=1)
    assert wf.to_yaml().splitlines() == [
        "name: tiny",
        "version: '1'",
        "steps:",
        "  - id: a",
        "    uses: files.echo",
        "    with:",
        "      x: 1",
    ]
