"""``@legato.filter``: user filters for ``${{ value | name }}`` expressions.

A filter is plain Python: it gets JSON values (and the arguments written in
the expression) and returns a value that must be JSON where it ends up (a
step's inputs, an output). Like a task, it is found by registration, never by
a path written in a definition: the process that checks a definition and every
process that evaluates its expressions (workers, ``legato run``) must import
the module defining it (``--import`` / ``LEGATO_IMPORTS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from legato.errors import DefinitionError
from legato.expressions import register_filter, registered_filter

__all__ = ["filter"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def filter(fn: F, /) -> F: ...


@overload
def filter(*, name: str | None = None) -> Callable[[F], F]: ...


def filter(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Register ``fn`` as a filter under ``name`` (default: the function's name).

    The function stays a plain function. A name another function already holds
    is refused; registering the same function again (a reloaded module) is not.
    """

    def register(func: F) -> F:
        if not callable(func):
            raise DefinitionError(f"@legato.filter needs a function, got {func!r}")
        filter_name = name if name is not None else getattr(func, "__name__", "")
        existing = registered_filter(filter_name)
        if existing is not None and _origin(existing) != _origin(func):
            raise DefinitionError(
                f"filter name {filter_name!r} is already registered for {_origin(existing)}; "
                f'{_origin(func)} needs another name (@legato.filter(name="..."))'
            )
        register_filter(filter_name, func)
        return func

    if fn is not None:
        return register(fn)
    return register


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
