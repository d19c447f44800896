"""From a definition document to the one spec: jobs, stages and steps become spec steps.

* ``steps:`` is a graph: each step runs after its ``needs`` (and what it
  reads), as in the spec itself; exports are written this way.
* ``stages:`` run in order: each runs after the one before it, whatever that
  one did (``after``), so a skipped stage does not skip the next, while a
  failed one stops the rest, as steps of a GitHub Actions job do. A stage
  whose ``if`` calls a status function (``failure()``, ``always()``) runs
  after every stage before it, so it sees any earlier failure.
* a job is a ``group`` of its stages, or with ``strategy.matrix`` a ``map``
  over the matrix's combinations (``matrix`` in expressions); its output is
  ``jobs.<id>.outputs``.
* ``parallel`` branches are groups inside a group; its output maps each
  branch to its last stage's output.

Problems are reported at their line and column, with the field path and
what was expected and found: the document's shape first (all of it at
once), then what the spec finds (unknown references, cycles), at the stage
it concerns.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from legato.errors import DefinitionError, TemplateError
from legato.expressions import references
from legato.files.documents import DocPath, Document
from legato.files.env import EnvRules, substitute
from legato.files.format import (
    Block,
    Definition,
    FailureHandlerDef,
    GroupStage,
    LoopStage,
    MapStage,
    ParallelStage,
    ParamDef,
    RaiseStage,
    RetryDef,
    SetVarsStage,
    ShellStage,
    SignalStage,
    SleepStage,
    SleepUntil,
    StageBase,
    SwitchStage,
    TaskStage,
    TerminateStage,
    TriggerStage,
)
from legato.model.spec import WorkflowSpec
from legato.model.steps import STEP_ID_PATTERN

__all__ = ["SHELL_TASK", "Compiled", "compile_document", "format_path"]

#: the built-in task a shell stage calls
SHELL_TASK = "legato.shell"

_ID_UNSAFE = re.compile(r"[^a-z0-9_-]+")
_STEP_NAMED = re.compile(r"step '([^']+)'")
_CYCLE = re.compile(r"cycle: ([A-Za-z_][A-Za-z0-9_-]*)")
_INSIDE = re.compile(r"refers to step '([^']+)', which is inside another step")
#: spec field -> what a file calls it
_FILE_NAMES = {
    "when": "if",
    "inputs": "with",
    "task": "uses",
    "for_each": "foreach",
    "value": "switch",
    "signal": "wait_for",
    "vars": "set_vars",
}


class Compiled:
    """A document's spec, and where each of its steps was written."""

    def __init__(self, spec: WorkflowSpec, document: Document, paths: dict[str, DocPath]) -> None:
        self.spec = spec
        self.document = document
        self.paths = paths

    def where(self, step_id: str | None = None) -> str:
        """``file.yaml:12:5`` for a step, or the document's own position."""
        path = self.paths.get(step_id or "", ())
        return self.document.where(path)

    def locate(self, message: str) -> str:
        """``message`` prefixed by the position of the first step it names."""
        return _locate(message, self.document, self.paths)


def format_path(path: DocPath) -> str:
    """``jobs.load.stages[0].with``: a path as people read it."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def compile_document(
    document: Document,
    *,
    env: EnvRules | None = None,
    allow_shell: bool = False,
) -> Compiled:
    """The document's spec, or one DefinitionError listing every problem found."""
    rules = env or EnvRules()
    data, problems = substitute(document.data, rules)
    if problems:
        raise _error(document, [f"{document.where(p)}: {format_path(p)}: {m}" for p, m in problems])
    compiler = _Compiler(document, allow_shell=allow_shell, env=rules)
    spec_data = compiler.definition(data, ())
    if compiler.problems:
        raise _error(document, compiler.problems)
    try:
        spec = WorkflowSpec.parse(spec_data, source=f"workflow {spec_data.get('name')!r}")
    except DefinitionError as exc:
        located = [_locate(p, document, compiler.paths) for p in exc.problems]
        raise _error(document, located) from None
    return Compiled(spec, document, compiler.paths)


def _error(document: Document, problems: list[str]) -> DefinitionError:
    if len(problems) == 1:
        return DefinitionError(problems[0], problems)
    lines = "\n".join(f"  {p}" for p in problems)
    return DefinitionError(f"{document.source} has {len(problems)} problems:\n{lines}", problems)


# -- the shape of a document (pydantic's findings, at their positions) --------------------------


def validate_model(
    model: type[BaseModel], data: Any, document: Document, path: DocPath
) -> tuple[Any, list[str]]:
    """``model`` validated from ``data`` (found at ``path``), or the problems, positioned."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _shape_problems(exc, data, document, path)


def _shape_problems(
    exc: ValidationError, data: Any, document: Document, base: DocPath
) -> list[str]:
    grouped: dict[DocPath, list[Any]] = {}
    for err in exc.errors(include_url=False):
        path = _data_path(tuple(err["loc"]), data)
        grouped.setdefault(path, []).append(err)
    problems = []
    for path, errors in grouped.items():
        full = (*base, *path)
        for message in _messages(errors, path, data):
            problems.append(f"{document.where(full)}: {format_path(full)}: {message}")
    return problems


def _data_path(loc: tuple[int | str, ...], data: Any) -> DocPath:
    """The part of pydantic's ``loc`` that is in the data (union tags and type names are not)."""
    path: list[str | int] = []
    node = data
    after_index = False
    for part in loc:
        if after_index and part in _STAGE_TAGS:
            after_index = False
            continue  # the stage union's tag, which pydantic puts after a stage's position
        after_index = isinstance(part, int)
        if _holds(node, part):
            node = node[part]
            path.append(part)
        # else: a union's member type, which the data does not hold
    return tuple(path)


_STAGE_TAGS = frozenset(
    [
        "task",
        "shell",
        "map",
        "parallel",
        "group",
        "switch",
        "loop",
        "trigger",
        "sleep",
        "wait_for",
        "raise",
        "terminate",
        "set_vars",
        "invalid",
    ]
)


def _holds(node: Any, part: int | str) -> bool:
    if isinstance(node, Mapping):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _messages(errors: list[dict[str, Any]], path: DocPath, data: Any) -> list[str]:
    messages: list[str] = []
    expected: list[str] = []
    found: Any = None
    for err in errors:
        kind = err["type"]
        loc = err["loc"]
        if kind == "missing":
            messages.append(f"{loc[-1]!s} is required")
        elif kind == "extra_forbidden":
            key = str(loc[-1])
            others = [k for k in _KNOWN_KEYS if k != key]
            close = difflib.get_close_matches(key, others, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            messages.append(f"unknown key {key!r}{hint}")
        elif kind in _EXPECTED:
            expected.append(_EXPECTED[kind])
            found = err.get("input")
        elif kind == "literal_error":
            expected.append(f"one of {err['ctx']['expected']}")
            found = err.get("input")
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            bound = next(iter(err["ctx"].values()))
            words = {
                "greater_than_equal": "at least",
                "greater_than": "more than",
                "less_than_equal": "at most",
                "less_than": "less than",
            }[kind]
            expected.append(f"a number {words} {bound}")
            found = err.get("input")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if loc:  # checks that name their field already need not name it twice
                message = message.removeprefix(f"{loc[-1]}: ")
            if message not in messages:
                messages.append(message)
    if expected:
        unique = list(dict.fromkeys(expected))
        messages.append(f"expected {' or '.join(unique)}, found {describe(found)}")
    return messages


_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def describe(value: Any) -> str:
    """``text 'abc'``, ``number 5``, ``a mapping``: a found value in words, briefly."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"text {shown!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _all_keys() -> list[str]:
    import legato.files.format as fmt

    keys: set[str] = set()
    for value in vars(fmt).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            for name, info in value.model_fields.items():
                keys.add(info.alias or name)
                choices = getattr(info.validation_alias, "choices", None) or ()
                keys.update(c for c in choices if isinstance(c, str))
    return sorted(keys)


_KNOWN_KEYS = _all_keys()


# -- spec problems, placed at the stage they name ---------------------------------------------


def _locate(message: str, document: Document, paths: Mapping[str, DocPath]) -> str:
    match = _STEP_NAMED.search(message) or _CYCLE.search(message)
    path: DocPath = ()
    if match and match.group(1) in paths:
        path = paths[match.group(1)]
        rest = message[match.end() :].lstrip()
        field = re.match(r"([a-z_]+)", rest)
        if field:
            name = _FILE_NAMES.get(field.group(1), field.group(1))
            message = message[: match.end()] + " " + name + rest[len(field.group(1)) :]
            path = (*path, name)
    inside = _INSIDE.search(message)
    if inside and inside.group(1) in paths:
        # A stage of another job: jobs share what they declare as outputs.
        where = paths[inside.group(1)]
        if len(where) > 2 and where[0] == "jobs":
            job = where[1]
            message += f" (it is in job {job!r}: give that job outputs and read jobs.{job}.outputs)"
    return f"{document.where(path)}: {message}"


# -- compiling -----------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, document: Document, *, allow_shell: bool, env: EnvRules) -> None:
        self.document = document
        self.allow_shell = allow_shell
        self.env = env
        self.problems: list[str] = []
        #: step id -> where it was written (the stage, or the job)
        self.paths: dict[str, DocPath] = {}
        self.declared: set[str] = set()

    def problem(self, path: DocPath, message: str) -> None:
        self.problems.append(f"{self.document.where(path)}: {format_path(path)}: {message}")

    # -- the workflow --------------------------------------------------------------------

    def definition(self, data: Any, path: DocPath) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.problem(path, f"a workflow is a mapping, found {describe(data)}")
            return {}
        data = self._versions(data, path)
        definition, problems = validate_model(Definition, data, self.document, path)
        if problems:
            self.problems.extend(problems)
            return {}
        assert isinstance(definition, Definition)
        self.declared |= _declared_ids(data)
        spec: dict[str, Any] = {
            "name": definition.name,
            "version": definition.version,
            "description": definition.description,
            "params": {name: self.param(declared) for name, declared in definition.params.items()},
            "extra_params": definition.extra_params,
            "outputs": definition.outputs,
        }
        triggers = self.triggers(definition)
        if triggers:
            spec["triggers"] = triggers
        if definition.on_failure is not None:
            spec["on_failure"] = self.failure_handler(definition.on_failure, (*path, "on_failure"))
        if definition.jobs is not None:
            spec["steps"] = [
                self.job(job_id, job, (*path, "jobs", job_id))
                for job_id, job in definition.jobs.items()
            ]
        elif definition.stages is not None:
            spec["steps"] = self.stages(definition.stages, (*path, "stages"), "stage", True)
        else:
            assert definition.steps is not None
            spec["steps"] = self.stages(definition.steps, (*path, "steps"), "step", False)
        return spec

    def _versions(self, data: dict[str, Any], path: DocPath) -> dict[str, Any]:
        """``version: 1.10`` is the text written, not the number 1.1."""
        raw = self.document.raw.get((*path, "version"))
        if raw is not None and isinstance(data.get("version"), int | float):
            return {**data, "version": raw}
        return data

    def param(self, declared: str | ParamDef) -> dict[str, Any]:
        if isinstance(declared, str):
            return {"type": declared, "required": True}
        given = declared.model_fields_set
        required = declared.required if declared.required is not None else "default" not in given
        param: dict[str, Any] = {"type": declared.type, "required": required}
        if declared.default is not None:
            param["default"] = declared.default
        if declared.description is not None:
            param["description"] = declared.description
        if declared.options is not None:
            param["options"] = declared.options
        return param

    def triggers(self, definition: Definition) -> list[dict[str, Any]]:
        if definition.on is None:
            return []
        given = definition.on if isinstance(definition.on, list) else [definition.on]
        return [
            {"cron": t.cron, "timezone": t.timezone, **({"params": t.params} if t.params else {})}
            for t in given
        ]

    def failure_handler(self, handler: FailureHandlerDef, path: DocPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(handler.workflow, str):
            out["workflow"] = handler.workflow
        else:
            out["spec"] = self.inline(handler.workflow, (*path, "workflow"))
        if handler.version is not None:
            out["version"] = handler.version
        if handler.params is not None:
            out["params"] = handler.params
        return out

    # -- jobs ----------------------------------------------------------------------------------

    def job(self, job_id: str, job: Any, path: DocPath) -> dict[str, Any]:
        self.paths.setdefault(job_id, path)
        if job.stages is not None:
            steps = self.stages(job.stages, (*path, "stages"), job_id, True)
        else:
            steps = self.stages(job.steps, (*path, "steps"), job_id, False)
        step: dict[str, Any] = {
            "id": job_id,
            "needs": _as_list(job.needs),
            "continue_on_error": job.continue_on_error,
            "description": job.description or job.name,
            "steps": steps,
        }
        when = _condition(job.if_)
        if when is not None:
            step["when"] = when
        if job.outputs is not None:
            step["output"] = job.outputs
        if job.strategy is None:
            return {**step, "kind": "group"}
        strategy = job.strategy
        combinations = matrix_combinations(strategy.matrix, strategy.include, strategy.exclude)
        if not combinations:
            self.problem((*path, "strategy"), "the matrix has no combinations")
        step.update(kind="map", for_each=combinations, matrix=True)
        if strategy.max_parallel is not None:
            step["max_parallel"] = strategy.max_parallel
        return step

    # -- lists of stages -------------------------------------------------------------------------

    def stages(
        self, stages: list[Any], path: DocPath, parent: str, in_order: bool
    ) -> list[dict[str, Any]]:
        compiled = [self.stage(stage, (*path, i), parent, i) for i, stage in enumerate(stages)]
        if in_order:
            _in_order(compiled)
        return compiled

    def branch(self, branch: Any, path: DocPath, parent: str) -> list[dict[str, Any]]:
        if isinstance(branch, Block):
            if branch.stages is not None:
                return self.stages(branch.stages, (*path, "stages"), parent, True)
            assert branch.steps is not None
            return self.stages(branch.steps, (*path, "steps"), parent, False)
        return self.stages(branch, path, parent, True)

    def inner(self, stage: Any, path: DocPath, parent: str) -> list[dict[str, Any]] | None:
        if stage.stages is not None:
            return self.stages(stage.stages, (*path, "stages"), parent, True)
        if stage.steps is not None:
            return self.stages(stage.steps, (*path, "steps"), parent, False)
        return None

    # -- one stage -------------------------------------------------------------------------------

    def stage(self, stage: Any, path: DocPath, parent: str, index: int) -> dict[str, Any]:
        step_id = self.step_id(stage, path, parent, index)
        step: dict[str, Any] = {"id": step_id, **self.common(stage)}
        build = self._KINDS.get(type(stage))
        if build is None:  # pragma: no cover - every model of the union has a builder
            raise TypeError(type(stage).__name__)
        step.update(build(self, stage, path, step_id))
        return step

    def step_id(self, stage: StageBase, path: DocPath, parent: str, index: int) -> str:
        if stage.id is not None:
            first = self.paths.get(stage.id)
            if first is not None:
                self.problem(
                    (*path, "id"),
                    f"step id {stage.id!r} is used twice (first at line "
                    f"{_line(self.document, first)}); ids are unique in the whole workflow",
                )
            self.paths.setdefault(stage.id, path)
            return stage.id
        base = _slug(stage.name) if stage.name else ""
        if not base:
            base = f"{parent}_{index + 1}"
        candidate, n = base, 2
        while candidate in self.paths or candidate in self.declared:
            candidate, n = f"{base}_{n}", n + 1
        self.paths[candidate] = path
        return candidate

    def common(self, stage: StageBase) -> dict[str, Any]:
        found: dict[str, Any] = {
            "needs": _as_list(stage.needs),
            "continue_on_error": stage.continue_on_error,
        }
        if stage.after:
            found["after"] = _as_list(stage.after)
        description = stage.description or stage.name
        if description is not None:
            found["description"] = description
        when = _condition(stage.if_)
        if when is not None:
            found["when"] = when
        return found

    def call(self, stage: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if stage.retry is not None:
            found["retry"] = _retry(stage.retry)
        for name in (
            "timeout",
            "queue",
            "priority",
            "max_lost_attempts",
            "concurrency",
            "concurrency_key",
            "rate_limit",
            "schedule_to_start_timeout",
            "heartbeat_timeout",
        ):
            value = getattr(stage, name, None)
            if value is not None:
                found[name] = value
        return found

    def task(self, stage: TaskStage, path: DocPath, step_id: str) -> dict[str, Any]:
        return {
            "kind": "task",
            "task": stage.uses,
            "inputs": stage.with_,
            "args": stage.args,
            **self.call(stage),
        }

    def shell(self, stage: ShellStage, path: DocPath, step_id: str) -> dict[str, Any]:
        if not self.allow_shell:
            key = "run" if stage.run is not None else "bash"
            self.problem(
                (*path, key),
                "shell stages are off: the operator turns them on with LEGATO_ALLOW_SHELL=1",
            )
        inputs: dict[str, Any] = {"script": stage.run if stage.run is not None else stage.bash}
        if stage.env:
            inputs["env"] = stage.env
        if stage.cwd is not None:
            inputs["cwd"] = stage.cwd
        if stage.shell is not None:
            inputs["shell"] = stage.shell
        return {"kind": "task", "task": SHELL_TASK, "inputs": inputs, **self.call(stage)}

    def map(self, stage: MapStage, path: DocPath, step_id: str) -> dict[str, Any]:
        step: dict[str, Any] = {"kind": "map", "for_each": stage.foreach, **self.call(stage)}
        if stage.max_parallel is not None:
            step["max_parallel"] = stage.max_parallel
        if stage.uses is not None:
            step["task"] = stage.uses
        if stage.with_ is not None:
            step["inputs"] = stage.with_
        if stage.args is not None:
            step["args"] = stage.args
        steps = self.inner(stage, path, step_id)
        if steps is not None:
            step["steps"] = steps
        if stage.output is not None:
            step["output"] = stage.output
        if stage.matrix:
            step["matrix"] = True
        return step

    def parallel(self, stage: ParallelStage, path: DocPath, step_id: str) -> dict[str, Any]:
        branches = []
        output = {}
        for name, branch in stage.parallel.items():
            branch_path = (*path, "parallel", name)
            base = _slug(f"{step_id}_{name}") or f"{step_id}_branch"
            branch_id, n = base, 2
            while branch_id in self.paths or branch_id in self.declared:
                branch_id, n = f"{base}_{n}", n + 1
            self.paths[branch_id] = branch_path
            branches.append(
                {
                    "id": branch_id,
                    "kind": "group",
                    "description": f"branch {name!r}",
                    "steps": self.branch(branch, branch_path, branch_id),
                }
            )
            output[name] = "${{ steps[" + json.dumps(branch_id) + "].output }}"
        return {
            "kind": "group",
            "steps": branches,
            "output": stage.output if stage.output is not None else output,
        }

    def group(self, stage: GroupStage, path: DocPath, step_id: str) -> dict[str, Any]:
        if (stage.stages is None) == (stage.steps is None):
            self.problem(path, "a group gives stages (in order) or steps (a graph), exactly one")
        step: dict[str, Any] = {"kind": "group", "steps": self.inner(stage, path, step_id) or []}
        if stage.output is not None:
            step["output"] = stage.output
        return step

    def switch(self, stage: SwitchStage, path: DocPath, step_id: str) -> dict[str, Any]:
        given = stage.model_fields_set
        if "switch" in given:
            if "case" in given or "match" in given:
                self.problem(path, "give switch with cases, or case with match, not both")
            if stage.cases is None:
                self.problem(path, "cases is required beside switch")
            cases = {
                name: self.branch(branch, (*path, "cases", name), step_id)
                for name, branch in (stage.cases or {}).items()
            }
            otherwise = (
                []
                if stage.default is None
                else self.branch(stage.default, (*path, "default"), step_id)
            )
            return {"kind": "switch", "value": stage.switch, "cases": cases, "default": otherwise}
        if stage.match is None:
            self.problem(path, "match is required beside case")
        if stage.cases is not None or stage.default is not None:
            self.problem(path, "cases and default go with switch; with case, use match")
        cases = {}
        default: list[dict[str, Any]] = []
        for i, entry in enumerate(stage.match or []):
            entry_path = (*path, "match", i)
            inner = self.inner(entry, entry_path, step_id)
            if inner is None:
                self.problem(entry_path, "a match entry gives stages or steps")
                inner = []
            if entry.case == "_":
                default = inner
            else:
                cases[_case_name(entry.case)] = inner
        return {"kind": "switch", "value": stage.case, "cases": cases, "default": default}

    def loop(self, stage: LoopStage, path: DocPath, step_id: str) -> dict[str, Any]:
        steps = self.inner(stage, path, step_id)
        if steps is None:
            self.problem(path, "a loop gives stages (in order) or steps (a graph)")
        step: dict[str, Any] = {
            "kind": "loop",
            "until": _condition(stage.until),
            "max_iterations": stage.max_iterations,
            "steps": steps or [],
        }
        if stage.output is not None:
            step["output"] = stage.output
        return step

    def trigger(self, stage: TriggerStage, path: DocPath, step_id: str) -> dict[str, Any]:
        step: dict[str, Any] = {"kind": "sub_workflow", "params": stage.params}
        if isinstance(stage.trigger, str):
            step["workflow"] = stage.trigger
            if stage.version is not None:
                step["version"] = stage.version
        else:
            if stage.version is not None:
                self.problem((*path, "version"), "version goes with a workflow's name")
            step["spec"] = self.inline(stage.trigger, (*path, "trigger"))
        if stage.retry is not None:
            step["retry"] = _retry(stage.retry)
        if stage.timeout is not None:
            step["timeout"] = stage.timeout
        return step

    def inline(self, data: dict[str, Any], path: DocPath) -> dict[str, Any]:
        """A whole definition inside a trigger, as the spec holds it (its own step ids)."""
        child = _Compiler(self.document, allow_shell=self.allow_shell, env=self.env)
        spec_data = child.definition(data, path)
        if child.problems:
            self.problems.extend(child.problems)
            return {}
        try:
            spec = WorkflowSpec.parse(spec_data, source=f"workflow {spec_data.get('name')!r}")
        except DefinitionError as exc:
            self.problems.extend(_locate(p, self.document, child.paths) for p in exc.problems)
            return {}
        return spec.to_dict()

    def sleep(self, stage: SleepStage, path: DocPath, step_id: str) -> dict[str, Any]:
        if isinstance(stage.sleep, SleepUntil):
            found: dict[str, Any] = {"kind": "sleep"}
            if stage.sleep.until is not None:
                found["until"] = stage.sleep.until
            if stage.sleep.duration is not None:
                found["duration"] = stage.sleep.duration
            return found
        return {"kind": "sleep", "duration": stage.sleep}

    def wait_for(self, stage: SignalStage, path: DocPath, step_id: str) -> dict[str, Any]:
        step: dict[str, Any] = {
            "kind": "wait_for_signal",
            "signal": stage.wait_for,
            "on_timeout": stage.on_timeout,
            "default": stage.default,
        }
        if stage.timeout is not None:
            step["timeout"] = stage.timeout
        return step

    def raise_(self, stage: RaiseStage, path: DocPath, step_id: str) -> dict[str, Any]:
        return {"kind": "terminate", "status": "failed", "reason": stage.raise_}

    def terminate(self, stage: TerminateStage, path: DocPath, step_id: str) -> dict[str, Any]:
        return {
            "kind": "terminate",
            "status": stage.terminate,
            "reason": stage.reason,
            "outputs": stage.outputs,
        }

    def set_vars(self, stage: SetVarsStage, path: DocPath, step_id: str) -> dict[str, Any]:
        return {"kind": "set_vars", "vars": stage.set_vars}

    _KINDS: dict[type, Callable[..., dict[str, Any]]] = {
        TaskStage: task,
        ShellStage: shell,
        MapStage: map,
        ParallelStage: parallel,
        GroupStage: group,
        SwitchStage: switch,
        LoopStage: loop,
        TriggerStage: trigger,
        SleepStage: sleep,
        SignalStage: wait_for,
        RaiseStage: raise_,
        TerminateStage: terminate,
        SetVarsStage: set_vars,
    }


# -- helpers -------------------------------------------------------------------------------------


def _in_order(steps: list[dict[str, Any]]) -> None:
    """Stages in order: each after the one before; one reacting to failures after all."""
    for i, step in enumerate(steps):
        if i == 0:
            continue
        before = [s["id"] for s in steps[:i]] if _reacts(step) else [steps[i - 1]["id"]]
        step["after"] = list(dict.fromkeys([*before, *step.get("after", [])]))


def _reacts(step: dict[str, Any]) -> bool:
    when = step.get("when")
    if not isinstance(when, str):
        return False
    try:
        return bool(references(when).functions)
    except TemplateError:
        return False  # the spec reports it, at the stage


def _condition(value: str | bool | None) -> str | None:
    """``if``: an expression, with or without ``${{ }}``; ``true`` is no condition."""
    if value is None or value is True:
        return None
    if value is False:
        return "${{ false }}"
    text = value.strip()
    return text if "${{" in text else "${{ " + text + " }}"


def _as_list(value: list[str] | str) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _retry(value: int | RetryDef) -> dict[str, Any]:
    if isinstance(value, int):
        return {"max_attempts": value + 1}
    policy: dict[str, Any] = {}
    if value.retries is not None:
        policy["max_attempts"] = value.retries + 1
    for name in ("max_attempts", "backoff", "delay", "max_delay", "jitter", "retry_on"):
        found = getattr(value, name)
        if found is not None:
            policy[name] = found
    return policy


def _slug(name: str) -> str:
    slug = _ID_UNSAFE.sub("_", name.strip().lower()).strip("_-")
    if slug and not slug[0].isalpha() and slug[0] != "_":
        slug = "s_" + slug
    slug = slug.replace("__", "_")
    while "__" in slug:
        slug = slug.replace("__", "_")
    return slug[:64] if STEP_ID_PATTERN.match(slug[:64] or "-") else ""


def _case_name(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


def _line(document: Document, path: DocPath) -> int | str:
    found = document.position(path)
    return "?" if found is None else found.line


def _declared_ids(data: Any) -> set[str]:
    """Every ``id`` written anywhere in the document, so made-up ids never take one."""
    found: set[str] = set()
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, str):
            found.add(value)
        for key, item in data.items():
            if key == "jobs" and isinstance(item, dict):
                found.update(k for k in item if isinstance(k, str))
            found |= _declared_ids(item)
    elif isinstance(data, list):
        for item in data:
            found |= _declared_ids(item)
    return found


def matrix_combinations(
    matrix: Mapping[str, list[Any]],
    include: list[dict[str, Any]],
    exclude: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """A job's matrix as GitHub Actions expands it: every combination of the axes, less
    those matching an ``exclude`` entry; each ``include`` entry extends the combinations
    it matches on the axes' own keys, or is added as one of its own when it matches none."""
    axes = list(matrix)
    combos = [
        dict(zip(axes, values, strict=True)) for values in itertools.product(*matrix.values())
    ]
    if not axes:
        combos = []
    combos = [c for c in combos if not any(_matches(c, e) for e in exclude)]
    originals = [dict(c) for c in combos]
    for entry in include:
        matched = False
        for combo, original in zip(combos, originals, strict=True):
            axis_values = {k: v for k, v in entry.items() if k in matrix}
            if all(original.get(k) == v for k, v in axis_values.items()) and all(
                k not in original or original[k] == v for k, v in entry.items()
            ):
                combo.update(entry)
                matched = True
        if not matched:
            combos.append(dict(entry))
    return combos


def _matches(combo: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    return all(combo.get(k) == v for k, v in entry.items())
