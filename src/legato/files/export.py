"""Any spec written as a definition file, however it was built: ``wf.to_yaml()``.

The export is the spec in the file format's words (``uses``, ``with``,
``if``, ``foreach``, ``trigger``, ...), as a graph of ``steps`` with their
``needs`` and ``after`` written out, so reading it back gives the same spec,
with the same content hash. Text YAML 1.2 would read as something else
(``1e5``, ``0o17``, ``true``) is quoted.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from legato.files.compile import SHELL_TASK
from legato.files.documents import _core_value
from legato.model.spec import WorkflowSpec

__all__ = ["to_data", "to_json_text", "to_yaml"]

_CALL_FIELDS = (
    "retry",
    "timeout",
    "queue",
    "priority",
    "max_lost_attempts",
    "concurrency",
    "concurrency_key",
    "rate_limit",
    "schedule_to_start_timeout",
    "heartbeat_timeout",
)
_DURATION_FIELDS = {"timeout", "schedule_to_start_timeout", "heartbeat_timeout"}
_SHELL_INPUTS = {"script", "env", "cwd", "shell"}


def to_yaml(spec: WorkflowSpec) -> str:
    """The spec as a YAML definition file."""
    return yaml.dump(
        to_data(spec),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def to_json_text(spec: WorkflowSpec) -> str:
    """The spec as a JSON definition file."""
    return json.dumps(to_data(spec), indent=2, ensure_ascii=False) + "\n"


def to_data(spec: WorkflowSpec) -> dict[str, Any]:
    """The spec as a definition document: plain data in the file format's words."""
    data = spec.to_dict()
    document: dict[str, Any] = {"name": data["name"], "version": data.get("version", "1")}
    if data.get("description") is not None:
        document["description"] = data["description"]
    params = data.get("params") or {}
    if params:
        document["params"] = {name: _param(p) for name, p in params.items()}
    if data.get("extra_params"):
        document["extra_params"] = True
    triggers = data.get("triggers") or []
    if triggers:
        document["on"] = triggers
    handler = data.get("on_failure")
    if handler:
        document["on_failure"] = _failure_handler(handler)
    document["steps"] = [_step(s) for s in data["steps"]]
    if data.get("outputs"):
        document["outputs"] = data["outputs"]
    return document


def _failure_handler(handler: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if handler.get("spec") is not None:
        out["workflow"] = to_data(WorkflowSpec.parse(handler["spec"]))
    else:
        out["workflow"] = handler["workflow"]
    if handler.get("version") is not None:
        out["version"] = handler["version"]
    if handler.get("params") is not None:
        out["params"] = handler["params"]
    return out


def _param(param: dict[str, Any]) -> Any:
    if set(param) <= {"type"}:
        return param.get("type", "any")
    found = {"type": param.get("type", "any")}
    found.update({k: v for k, v in param.items() if k != "type"})
    return found


def _step(step: dict[str, Any]) -> dict[str, Any]:
    kind = step.get("kind", "task")
    out: dict[str, Any] = {"id": step["id"]}
    out.update(_KINDS[kind](step))
    if step.get("description") is not None:
        out["description"] = step["description"]
    for name in ("needs", "after"):
        if step.get(name):
            out[name] = step[name]
    if step.get("when") is not None:
        out["if"] = step["when"]
    if step.get("continue_on_error"):
        out["continue_on_error"] = True
    return out


def _calls(step: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _CALL_FIELDS:
        if name not in step:
            continue
        value = step[name]
        out[name] = (
            _retry(value)
            if name == "retry"
            else _duration(value)
            if name in _DURATION_FIELDS
            else value
        )
    return out


def _retry(policy: dict[str, Any]) -> Any:
    if set(policy) <= {"max_attempts"}:
        return policy.get("max_attempts", 1) - 1
    return {k: _duration(v) if k in ("delay", "max_delay") else v for k, v in policy.items()}


_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def _duration(value: Any) -> Any:
    """Whole seconds as people write them (``90`` -> ``1m30s``); anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return value
    seconds = int(value)
    if seconds <= 0:
        return value
    parts = []
    for unit, size in _UNITS:
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _task(step: dict[str, Any]) -> dict[str, Any]:
    inputs = step.get("inputs", {})
    if (
        step["task"] == SHELL_TASK
        and not step.get("args")
        and isinstance(inputs, dict)
        and isinstance(inputs.get("script"), str)
        and set(inputs) <= _SHELL_INPUTS
    ):
        out: dict[str, Any] = {"run": inputs["script"]}
        out.update({k: inputs[k] for k in ("env", "cwd", "shell") if k in inputs})
        return {**out, **_calls(step)}
    out = {"uses": step["task"]}
    if "inputs" in step:
        out["with"] = inputs
    if step.get("args"):
        out["args"] = step["args"]
    return {**out, **_calls(step)}


def _steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_step(s) for s in steps]


def _map(step: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"foreach": step["for_each"]}
    if "max_parallel" in step:
        out["max_parallel"] = step["max_parallel"]
    if "task" in step:
        out["uses"] = step["task"]
    if "inputs" in step:
        out["with"] = step["inputs"]
    if step.get("args"):
        out["args"] = step["args"]
    if step.get("steps"):
        out["steps"] = _steps(step["steps"])
    if "output" in step:
        out["output"] = step["output"]
    if step.get("matrix"):
        out["matrix"] = True
    return {**out, **_calls(step)}


def _loop(step: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"until": step["until"]}
    if "max_iterations" in step:
        out["max_iterations"] = step["max_iterations"]
    out["steps"] = _steps(step["steps"])
    if "output" in step:
        out["output"] = step["output"]
    return out


def _group(step: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": _steps(step.get("steps", []))}
    if "output" in step:
        out["output"] = step["output"]
    return out


def _switch(step: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "switch": step.get("value"),
        "cases": {name: {"steps": _steps(s)} for name, s in step["cases"].items()},
    }
    if step.get("default"):
        out["default"] = {"steps": _steps(step["default"])}
    return out


def _sub_workflow(step: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any]
    if step.get("spec") is not None:
        out = {"trigger": to_data(WorkflowSpec.parse(step["spec"]))}
    else:
        out = {"trigger": step["workflow"]}
        if step.get("version") is not None:
            out["version"] = step["version"]
    if step.get("params"):
        out["params"] = step["params"]
    for name in ("retry", "timeout"):
        if name in step:
            out[name] = _retry(step[name]) if name == "retry" else _duration(step[name])
    return out


def _sleep(step: dict[str, Any]) -> dict[str, Any]:
    if step.get("until") is not None:
        out: dict[str, Any] = {"until": step["until"]}
        if step.get("duration") is not None:
            out["duration"] = _duration(step["duration"])
        return {"sleep": out}
    return {"sleep": _duration(step.get("duration"))}


def _signal(step: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"wait_for": step["signal"]}
    for name in ("timeout", "on_timeout", "default"):
        if name in step:
            out[name] = _duration(step[name]) if name == "timeout" else step[name]
    return out


def _terminate(step: dict[str, Any]) -> dict[str, Any]:
    status = step.get("status", "completed")
    reason = step.get("reason")
    if status == "failed" and isinstance(reason, str) and not step.get("outputs"):
        return {"raise": reason}
    out: dict[str, Any] = {"terminate": status}
    if reason is not None:
        out["reason"] = reason
    if step.get("outputs"):
        out["outputs"] = step["outputs"]
    return out


def _set_vars(step: dict[str, Any]) -> dict[str, Any]:
    return {"set_vars": step["vars"]}


_KINDS = {
    "task": _task,
    "map": _map,
    "loop": _loop,
    "group": _group,
    "switch": _switch,
    "sub_workflow": _sub_workflow,
    "sleep": _sleep,
    "wait_for_signal": _signal,
    "terminate": _terminate,
    "set_vars": _set_vars,
}


class _Dumper(yaml.SafeDumper):
    """Quotes text the core schema would read as another type; long text as a block;
    lists indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if "\n" in text:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    if _core_value(text) != text or text != text.strip():
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="'")
    return dumper.represent_str(text)


_Dumper.add_representer(str, _represent_text)
