"""``--help`` without type placeholders where nothing is typed.

Typer's rich help puts a type after every option without a metavar, so a flag
read ``--quiet <bool>`` as if it took a value, and after every argument, so one
with a metavar read ``TARGET <str>``. :func:`plain_help` gives every command
and group of an app command classes whose help leaves those out; options that
take a value keep their metavar (``--lease DURATION``).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["HelpCommand", "HelpGroup", "plain_help"]


class _Option(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None  # a flag takes no value: there is no type to show
        return super().display_type_rich(ctx)


class _Argument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return None  # the metavar says what to give
        return super().display_type_rich(ctx)


def _plain(params: list[Any]) -> list[Any]:
    for param in params:
        # Re-class in place: the parameter keeps its state and stays a
        # TyperOption/TyperArgument; only how its help is drawn changes.
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    return params


class HelpCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx))


class HelpGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx))


def plain_help(app: typer.Typer) -> None:
    """Use :class:`HelpCommand` and :class:`HelpGroup` for ``app`` and all it holds.

    Call it once the app is wired: commands and groups added later keep typer's own.
    """
    if not _given(app.info.cls) or app.info.cls is TyperGroup:
        app.info.cls = HelpGroup
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):  # typer fills in its own when none is given
            command.cls = HelpCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            plain_help(group.typer_instance)


def _given(value: Any) -> bool:
    # Typer marks a setting left unset with a DefaultPlaceholder holding its default.
    return value is not None and not isinstance(value, typer.models.DefaultPlaceholder)
