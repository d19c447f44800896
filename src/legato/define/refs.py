"""References to values known only when the run gets there, and the conversion of
builder arguments into spec values: ``step.output["rows"]`` becomes
``${{ steps.<id>.output['rows'] }}``, so a spec built in Python reads the same as one
written in YAML.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from legato.errors import DefinitionError, PayloadError
from legato.model.spec import RetryPolicy, check_retries, format_validation_error
from legato.payload import to_json

if TYPE_CHECKING:
    from legato.define.builder import Workflow

__all__ = [
    "ItemRef",
    "OutputRef",
    "ParamRef",
    "StepRef",
    "VarRef",
    "index",
    "item",
    "iteration",
    "var",
]


class _Ref:
    """A value known only when the run gets there, written as an expression."""

    expression: str

    def template(self) -> str:
        return "${{ " + self.expression + " }}"

    def __repr__(self) -> str:
        return self.template()


class ParamRef(_Ref):
    def __init__(self, name: str) -> None:
        self.name = name
        self.expression = f"params{_accessor(name)}"


class OutputRef(_Ref):
    """A step's output, or a part of it: ``step.output["rows"][0]``."""

    def __init__(self, step_id: str, path: tuple[str | int, ...] = ()) -> None:
        self.step_id = step_id
        self.path = path
        self.expression = f"steps{_accessor(step_id)}.output" + "".join(
            f"[{json.dumps(p)}]" if isinstance(p, str) else f"[{p}]" for p in path
        )

    def __getitem__(self, key: str | int) -> OutputRef:
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise DefinitionError(f"output keys are strings or list indexes, got {key!r}")
        return OutputRef(self.step_id, (*self.path, key))


def _accessor(name: str) -> str:
    return f".{name}" if name.isidentifier() else f"[{json.dumps(name)}]"


class StepRef:
    """What ``wf.step(...)`` returns: use ``.output`` for data, ``>>`` for order."""

    def __init__(self, workflow: Workflow, step_id: str) -> None:
        self._workflow = workflow
        self.id = step_id

    @property
    def status(self) -> _Ref:
        """The step's status when read (``completed``, ``failed``, ``skipped``, ...)."""
        return _Expression(f"steps{_accessor(self.id)}.status")

    @property
    def output(self) -> OutputRef:
        return OutputRef(self.id)

    def __rshift__(self, other: StepRef | list[StepRef]) -> StepRef | list[StepRef]:
        for target in _as_refs(other, "a >> b"):
            target._workflow._add_need(target.id, self.id)
        return other

    def __rrshift__(self, other: list[StepRef]) -> StepRef:
        for source in _as_refs(other, "[a, b] >> c"):
            self._workflow._add_need(self.id, source.id)
        return self

    def __repr__(self) -> str:
        return f"<step {self.id!r} of {self._workflow.name!r}>"


def _as_refs(value: Any, where: str) -> list[StepRef]:
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, StepRef):
            raise DefinitionError(f"{where}: expected steps, got {item!r}")
    return list(items)


class _Expression(_Ref):
    def __init__(self, expression: str) -> None:
        self.expression = expression


class ItemRef(_Ref):
    """``item`` (or a part of it) inside a map, ``index`` too, ``iteration`` inside a loop."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def __getitem__(self, key: str | int) -> ItemRef:
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise DefinitionError(f"item keys are strings or list indexes, got {key!r}")
        return ItemRef(f"{self.expression}[{json.dumps(key)}]")


class VarRef(_Ref):
    """A run variable: ``vars.<name>``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.expression = f"vars{_accessor(name)}"


#: the current item of a map, its index, and a loop's iteration number
item = ItemRef("item")
index = ItemRef("index")
iteration = ItemRef("iteration")


def var(name: str) -> VarRef:
    """A run variable, as set by ``set_vars`` steps or ``Client.update_variables``."""
    return VarRef(name)


def _retry_policy(retry: RetryPolicy | int | dict[str, Any], where: str) -> dict[str, Any]:
    try:
        if isinstance(retry, RetryPolicy):
            policy = retry
        elif isinstance(retry, int) and not isinstance(retry, bool):
            policy = RetryPolicy(max_attempts=check_retries(retry) + 1)
        elif isinstance(retry, dict):
            policy = RetryPolicy(**retry)
        else:
            raise TypeError(f"expected RetryPolicy, a number of retries or a dict, got {retry!r}")
    except ValidationError as exc:
        problems = "; ".join(format_validation_error(exc))
        raise DefinitionError(f"{where}: invalid retry: {problems}") from None
    except Exception as exc:
        raise DefinitionError(f"{where}: invalid retry: {exc}") from None
    return policy.model_dump(mode="json", exclude_defaults=True)


def _to_spec_value(value: Any, where: str) -> Any:
    # References become text first, then the whole value passes the JSON gate
    # once, so an error names the path inside it and keys are checked too.
    return _literal(_with_templates(value, where), where)


def _with_templates(value: Any, where: str) -> Any:
    if isinstance(value, _Ref):
        return value.template()
    if isinstance(value, StepRef):
        raise DefinitionError(f"{where}: pass {value.id}.output, not the step itself")
    if isinstance(value, dict):
        return {k: _with_templates(v, where) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_with_templates(v, where) for v in value]
    return value


def _literal(value: Any, where: str) -> Any:
    try:
        plain, _ = to_json(value, what=where, max_bytes=None)
    except PayloadError as exc:
        raise DefinitionError(str(exc)) from None
    return plain
