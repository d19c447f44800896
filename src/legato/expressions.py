"""``${{ ... }}`` expressions, evaluated in Jinja2's immutable sandbox.

The language every definition front end shares; it sits below the spec
(``legato.model`` uses it to find references) and depends on nothing else of
legato's but its errors.

A string that is exactly one expression keeps the expression's native type
(``"${{ steps.a.output }}"`` yields the list itself); any other string with
expressions in it is rendered as text. Evaluation cannot reach dunder
attributes, mutate values or import anything, and sources and rendered text
are bounded in size. Dot access on JSON objects means the key, so
``output.items`` is the ``"items"`` key, not the dict method.

Filters are Jinja's own, legato's (:mod:`legato.filters`: ``fmt``, ``json``,
``from_json``, ``date``, ``datetime``, ``bool``, ``str``) and those registered
with ``@legato.filter``. A filter no one registered is refused where the
expression is checked, before any run, as an unknown name is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from legato.errors import DefinitionError, TemplateError
from legato.filters import BUILTIN_FILTERS

__all__ = [
    "CONTEXTS",
    "STATUS_FUNCTIONS",
    "References",
    "evaluate",
    "filter_names",
    "has_expressions",
    "is_whole_expression",
    "references",
    "register_filter",
]

#: Names an expression may start from. ``item`` (also called ``matrix``) and
#: ``index`` exist inside a map's items, ``iteration`` inside a loop's body,
#: ``secrets`` only in a task call's inputs (the worker resolves them; see
#: ``model/checks.py``). ``jobs.<id>.outputs`` and ``.status`` are
#: ``steps.<id>.output`` and ``.status`` as YAML jobs name them.
CONTEXTS = (
    "params",
    "steps",
    "jobs",
    "run",
    "vars",
    "item",
    "matrix",
    "index",
    "iteration",
    "secrets",
)

#: contexts read by a fixed key only (``params.x``, ``steps.<id>``, ``secrets.NAME``)
_KEYED = ("steps", "jobs", "params", "secrets")

#: what ``jobs.<id>`` offers
_JOB_FIELDS = ("outputs", "status")

#: Status functions a step's ``when`` may call, as in GitHub Actions.
STATUS_FUNCTIONS = ("always", "success", "failure", "cancelled")

MAX_SOURCE_CHARS = 10_000
MAX_RENDERED_CHARS = 1_000_000

_WHOLE = re.compile(r"^\s*\$\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)
_START = "${{"


#: the largest integer ``**`` may build, in bits (a few thousand digits)
MAX_POWER_BITS = 16_384


class _Env(ImmutableSandboxedEnvironment):
    # ``**`` and ``*`` can build values far too large to compute (``10 ** 10 ** 10``,
    # ``'x' * 10 ** 12``): they are checked before they run, not after.
    intercepted_binops = frozenset({"**", "*"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise SecurityError(
                f"{left} ** {right} would be an integer of more than {MAX_POWER_BITS:,} bits"
            )
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _repeated_length(seq, times) > MAX_RENDERED_CHARS:
                    raise SecurityError(
                        f"repeating a {type(seq).__name__} of length {len(seq):,} {times:,} "
                        f"times would make more than {MAX_RENDERED_CHARS:,} items"
                    )
        return super().call_binop(context, operator, left, right)


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits ``base ** exponent`` takes (0 where it cannot grow large)."""
    if not (_is_int(base) and _is_int(exponent)) or exponent <= 0 or abs(base) <= 1:
        return 0
    return int(exponent * abs(base).bit_length())


def _repeated_length(seq: Any, times: Any) -> int:
    if isinstance(seq, str | list | tuple) and _is_int(times):
        return len(seq) * int(times)
    return 0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_env = _Env(
    variable_start_string="${{",
    variable_end_string="}}",
    block_start_string="${%",
    block_end_string="%}",
    comment_start_string="${#",
    comment_end_string="#}",
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)
#: Jinja's own filters, by name: the ones no user filter may replace
_JINJA_FILTERS = frozenset(_env.filters)
_env.filters.update(BUILTIN_FILTERS)
_env.filters["str"] = _env.filters["string"]
#: legato's filters, beside Jinja's
LEGATO_FILTERS = frozenset({*BUILTIN_FILTERS, "str"})
#: filters registered with ``@legato.filter``, by name
_user_filters: dict[str, Callable[..., Any]] = {}
FILTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def register_filter(name: str, fn: Callable[..., Any]) -> None:
    """Make ``fn`` usable as ``${{ value | name(...) }}`` in this process.

    A built-in filter (Jinja's or legato's) cannot be replaced; registering a
    name again replaces the earlier function (``@legato.filter`` refuses a name
    another function already holds).
    """
    if not isinstance(name, str) or not FILTER_NAME.match(name):
        raise DefinitionError(
            f"filter name {name!r} is not valid: letters, digits and '_', not starting "
            'with a digit; give the filter a valid name with @legato.filter(name="...")'
        )
    if name in _JINJA_FILTERS or name in LEGATO_FILTERS:
        raise DefinitionError(
            f"filter name {name!r} is a built-in filter; give yours another name "
            '(@legato.filter(name="..."))'
        )
    if not callable(fn):
        raise DefinitionError(f"filter {name!r} needs a function, got {fn!r}")
    _user_filters[name] = fn
    _env.filters[name] = fn


def filter_names() -> dict[str, list[str]]:
    """Known filters by who provides them: ``legato``, ``jinja`` and ``registered``."""
    return {
        "legato": sorted(LEGATO_FILTERS),
        "jinja": sorted(_JINJA_FILTERS),
        "registered": sorted(_user_filters),
    }


def registered_filter(name: str) -> Callable[..., Any] | None:
    """The function registered under ``name`` with ``@legato.filter``, if any."""
    return _user_filters.get(name)


def _unknown_filter(text: str, name: str) -> TemplateError:
    known = filter_names()
    close = difflib.get_close_matches(name, [n for names in known.values() for n in names], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    jinja = ", ".join(n for n in _COMMON_JINJA if n in known["jinja"])
    registered = ", ".join(known["registered"]) or "none in this process"
    return TemplateError(
        f"expression {text!r}: unknown filter {name!r}{hint}; known filters are legato's "
        f"({', '.join(known['legato'])}), Jinja's ({jinja}, ...) and those registered "
        f"with @legato.filter ({registered}); register one with @legato.filter in a "
        "module every process running the workflow imports (--import or LEGATO_IMPORTS)"
    )


#: Jinja's filters an unknown-filter message names (all of them are usable)
_COMMON_JINJA = ("default", "int", "float", "string", "tojson", "length", "join", "lower", "upper")


def _check_filters(text: str, names: frozenset[str]) -> None:
    for name in sorted(names):
        if name not in _env.filters:
            raise _unknown_filter(text, name)


def _filter_names(tree: nodes.Node) -> frozenset[str]:
    return frozenset(node.name for node in tree.find_all(nodes.Filter))


def is_whole_expression(text: str) -> bool:
    """True if ``text`` is exactly one ``${{ ... }}`` expression (it keeps its native type)."""
    return _WHOLE.match(text) is not None


def has_expressions(value: Any) -> bool:
    """True if ``value`` (or anything nested in it) holds a ``${{`` expression."""
    if isinstance(value, str):
        return _START in value
    if isinstance(value, dict):
        return any(has_expressions(v) for v in value.values())
    if isinstance(value, list):
        return any(has_expressions(v) for v in value)
    return False


@dataclass(frozen=True)
class References:
    """What a value's expressions read: step ids, param names, other context roots."""

    steps: frozenset[str] = frozenset()
    params: frozenset[str] = frozenset()
    roots: frozenset[str] = frozenset()
    whole_params: bool = False  # ``${{ params }}`` reads every param
    #: status functions called (``success``, ``failure``, ...)
    functions: frozenset[str] = frozenset()
    #: secret names read (``secrets.TOKEN``)
    secrets: frozenset[str] = frozenset()
    #: filters applied (``fmt``, ``json``, a registered one, ...)
    filters: frozenset[str] = frozenset()
    #: the steps among ``steps`` read for their status only (``steps.<id>.status``)
    status_only: frozenset[str] = frozenset()

    def __or__(self, other: References) -> References:
        outputs = (self.steps - self.status_only) | (other.steps - other.status_only)
        return References(
            self.steps | other.steps,
            self.params | other.params,
            self.roots | other.roots,
            self.whole_params or other.whole_params,
            self.functions | other.functions,
            self.secrets | other.secrets,
            self.filters | other.filters,
            (self.status_only | other.status_only) - outputs,
        )


def references(value: Any, *, check_filters: bool = False) -> References:
    """Parse every expression in ``value`` and return what it reads.

    Raises :class:`TemplateError` for syntax errors, unknown context names,
    step references that cannot be resolved before the run (``steps[x]``) and,
    with ``check_filters`` (a definition's checks), filters this process does
    not know. What runs a stored spec does not ask: a filter missing there
    fails the step that uses it, when it is evaluated, not the whole process.
    """
    if isinstance(value, str):
        if _START not in value:
            return References()
        refs = _string_references(value)
        if check_filters and refs.filters:
            _check_filters(value, refs.filters)
        return refs
    refs = References()
    if isinstance(value, dict):
        for item in value.values():
            refs = refs | references(item, check_filters=check_filters)
    elif isinstance(value, list):
        for item in value:
            refs = refs | references(item, check_filters=check_filters)
    return refs


@lru_cache(maxsize=4096)
def _string_references(text: str) -> References:
    tree = _parse(text)
    found: dict[str, set[str]] = {name: set() for name in _KEYED}
    roots: set[str] = set()
    whole_params = False
    keyed: set[int] = set()
    private: str | None = None
    accesses = [
        node
        for node in tree.find_all((nodes.Getattr, nodes.Getitem))
        if isinstance(node, nodes.Getattr | nodes.Getitem)
    ]
    #: what each access is followed by: ``steps.a`` -> ``output`` in ``steps.a.output``
    field_of = {id(node.node): _static_key(node) for node in accesses}
    status_reads: set[str] = set()
    output_reads: set[str] = set()
    for node in accesses:
        key = _static_key(node)
        if key is not None and key.startswith("_") and private is None:
            private = key
        inner = node.node
        if isinstance(inner, nodes.Name) and inner.name in _KEYED:
            keyed.add(id(inner))
            key = _static_key(node)
            if key is None:
                raise TemplateError(
                    f"expression {text!r}: {inner.name}[...] must use a fixed name, "
                    "so dependencies are known before the run"
                )
            if inner.name in ("params", "secrets"):
                found[inner.name].add(key)
                continue
            found["steps"].add(key)
            field = field_of.get(id(node))
            if inner.name == "jobs" and field not in _JOB_FIELDS:
                raise TemplateError(
                    f"expression {text!r}: use jobs.{key}.outputs or jobs.{key}.status; "
                    f"jobs.{key} offers nothing else"
                )
            (status_reads if field == "status" else output_reads).add(key)
    functions: set[str] = set()
    for name in tree.find_all(nodes.Name):
        if name.name in STATUS_FUNCTIONS:
            functions.add(name.name)
            continue
        if name.name not in CONTEXTS:
            raise TemplateError(
                f"expression {text!r}: unknown name {name.name!r}; "
                f"expressions start from one of {', '.join(CONTEXTS)}"
            )
        roots.add(name.name)
        if name.name == "params" and id(name) not in keyed:
            whole_params = True
        if name.name in ("steps", "jobs") and id(name) not in keyed:
            field = "output" if name.name == "steps" else "outputs"
            raise TemplateError(
                f"expression {text!r}: use {name.name}.<id>.{field}, "
                f"not the whole {name.name} context"
            )
        if name.name == "secrets" and id(name) not in keyed:
            raise TemplateError(
                f"expression {text!r}: read one secret by name (secrets.NAME), "
                "not the whole secrets context"
            )
    if private is not None:
        # The sandbox refuses these when evaluated; a definition is refused at once.
        raise TemplateError(
            f"expression {text!r}: access to {private!r} is not allowed "
            "(names starting with '_' are private)"
        )
    return References(
        frozenset(found["steps"]),
        frozenset(found["params"]),
        frozenset(roots),
        whole_params,
        frozenset(functions),
        frozenset(found["secrets"]),
        _filter_names(tree),
        frozenset(status_reads - output_reads),
    )


def _static_key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _parse(text: str) -> nodes.Template:
    if len(text) > MAX_SOURCE_CHARS:
        raise TemplateError(
            f"expression text is {len(text):,} characters, over the limit of {MAX_SOURCE_CHARS:,}"
        )
    try:
        return _env.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression {text!r} is not valid: {exc.message}") from None


def evaluate(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve every expression in ``value`` (recursively) against ``context``."""
    if isinstance(value, str):
        return _evaluate_string(value, context) if _START in value else value
    if isinstance(value, dict):
        return {k: evaluate(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate(v, context) for v in value]
    return value


def _evaluate_string(text: str, context: Mapping[str, Any]) -> Any:
    try:
        whole = _WHOLE.match(text)
        if whole is not None:
            result = _compiled_expression(whole.group("expr"))(**context)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            if not isinstance(result, str):
                return _unwrap(result)
            rendered = str(result)  # bounded like rendered text; plain (tojson's is Markup)
        else:
            rendered = _compiled_template(text).render(**context)
    except TemplateError:
        raise
    except UndefinedError as exc:
        raise TemplateError(f"expression {text!r}: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"expression {text!r} is not allowed: {exc}") from None
    except Exception as exc:  # evaluation errors from user data: 1/0, bad filter args
        raise TemplateError(f"expression {text!r} failed: {type(exc).__name__}: {exc}") from None
    if len(rendered) > MAX_RENDERED_CHARS:
        raise TemplateError(
            f"expression {text!r} rendered {len(rendered):,} characters, "
            f"over the limit of {MAX_RENDERED_CHARS:,}"
        )
    return rendered


def _unwrap(result: Any) -> Any:
    # Jinja hands back its own immutable views for some values; give plain data back.
    if isinstance(result, Mapping) and not isinstance(result, dict):
        return {k: _unwrap(v) for k, v in result.items()}
    if isinstance(result, date):  # ``| date``, ``| datetime``: JSON has ISO text for them
        return result.isoformat()
    return result


@lru_cache(maxsize=4096)
def _compiled_expression(source: str) -> Any:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateError(f"expression is over the limit of {MAX_SOURCE_CHARS:,} characters")
    text = f"${{{{{source}}}}}"
    try:
        _check_filters(text, _filter_names(_env.parse(text)))
        return _env.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression {text!r} is not valid: {exc.message}") from None


@lru_cache(maxsize=4096)
def _compiled_template(text: str) -> Any:
    if len(text) > MAX_SOURCE_CHARS:
        raise TemplateError(f"template is over the limit of {MAX_SOURCE_CHARS:,} characters")
    try:
        tree = _env.parse(text)
        _check_filters(text, _filter_names(tree))
        return _env.from_string(tree)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"expression {text!r} is not valid: {exc.message}") from None
