"""Reading definition files into plain JSON-like data that remembers where each value was.

YAML is read with PyYAML's safe composer, then turned into data by the YAML
1.2 core schema rather than PyYAML's 1.1 one, so ``on:`` is a key, ``no`` is
text, ``1:30`` is text and ``2024-01-01`` stays a string (everything must be
JSON in the end). Mapping keys are always text, as written. Duplicate keys,
tags other than the core ones, aliases that expand too far and files too big
are errors. JSON files are read with :mod:`json` (its syntax errors carry a
line and column) and positioned through the same composer.

Every value's position is kept by its path (``("jobs", "load", "stages", 0,
"with")``), so a problem found later can be reported at its line and column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from legato.errors import DefinitionError

__all__ = [
    "MAX_FILE_BYTES",
    "DocPath",
    "Document",
    "Position",
    "parse_documents",
    "read_documents",
]

#: the largest definition file read
MAX_FILE_BYTES = 2 * 1024 * 1024
#: the most values one document may hold once aliases are expanded
MAX_VALUES = 200_000
MAX_DEPTH = 200

#: a path into a document: mapping keys and list indices
DocPath = tuple[str | int, ...]

_CORE = "tag:yaml.org,2002:"
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


@dataclass(frozen=True)
class Position:
    """A place in a file: 1-based line and column."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass
class Document:
    """One workflow document of a file: its data and where each value was written."""

    source: str
    data: Any
    #: 0 for the first document of a file, 1 for the second (after ``---``) ...
    index: int = 0
    positions: dict[DocPath, Position] = field(default_factory=dict)
    #: the text of plain scalars as written, by path (``version: 1.10`` is "1.10")
    raw: dict[DocPath, str] = field(default_factory=dict)

    def position(self, path: DocPath) -> Position | None:
        """Where ``path`` (or the nearest value around it that was written) is."""
        while True:
            found = self.positions.get(tuple(path))
            if found is not None:
                return found
            if not path:
                return None
            path = path[:-1]

    def where(self, path: DocPath) -> str:
        """``file.yaml:12:5``: the file, with the line and column of ``path`` when known."""
        found = self.position(path)
        return self.source if found is None else f"{self.source}:{found}"


def read_documents(path: str | Path) -> list[Document]:
    """Every document of a ``.yaml``, ``.yml`` or ``.json`` file."""
    file = Path(path)
    shown = str(path)
    if not file.exists():
        raise DefinitionError(f"{shown}: no such file")
    if not file.is_file():
        raise DefinitionError(f"{shown}: not a file")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DefinitionError(
            f"{shown}: the file is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,}"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DefinitionError(f"{shown}: cannot be read: {exc.strerror or exc}") from None
    return parse_documents(text, shown, json_syntax=file.suffix.lower() == ".json")


def parse_documents(text: str, source: str, *, json_syntax: bool = False) -> list[Document]:
    """The documents of ``text`` (YAML, or JSON when ``json_syntax``), positioned."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise DefinitionError(f"{source}: the text is over the limit of {MAX_FILE_BYTES:,} bytes")
    if json_syntax:
        return [_json_document(text, source)]
    documents = []
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            builder = _Builder(source)
            data = builder.value(node, ())
            documents.append(Document(source, data, index, builder.positions, builder.raw))
            index += 1
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(source, exc) from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if not documents:
        raise DefinitionError(f"{source}: the file holds no workflow (it is empty)")
    return documents


def _syntax_error(source: str, exc: yaml.MarkedYAMLError) -> DefinitionError:
    mark = exc.problem_mark or exc.context_mark
    where = source if mark is None else f"{source}:{mark.line + 1}:{mark.column + 1}"
    problem = exc.problem or "not valid YAML"
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        context = f"{exc.context} at {exc.context_mark.line + 1}:{exc.context_mark.column + 1}"
        problem = f"{problem} ({context})"
    return DefinitionError(f"{where}: not valid YAML: {problem}")


def _json_document(text: str, source: str) -> Document:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise _DuplicateKey(key)
            found[key] = value
        return found

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    except _DuplicateKey as exc:
        raise DefinitionError(f"{source}: not valid JSON: key {exc.key!r} is given twice") from None
    except RecursionError:
        raise DefinitionError(f"{source}: not valid JSON: nested too deeply") from None
    document = Document(source, data)
    # Positions come from the YAML composer, which reads JSON too; JSON it cannot read
    # (a tab where YAML refuses one) simply goes without line numbers.
    try:
        positioned = parse_documents(text, source)
    except DefinitionError:
        return document
    if len(positioned) == 1:
        document.positions = positioned[0].positions
    return document


class _Loader(yaml.SafeLoader):
    """The safe composer, noting which scalars carry a tag written in the file."""

    def compose_scalar_node(self, anchor: Any) -> Node:
        event = self.peek_event()
        node = super().compose_scalar_node(anchor)
        node.explicit_tag = event.tag not in (None, "!")  # type: ignore[attr-defined]
        return node


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _Builder:
    """Turns composed nodes into data under the core schema, noting positions."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.positions: dict[DocPath, Position] = {}
        self.raw: dict[DocPath, str] = {}
        self.count = 0

    def fail(self, node: Node, message: str) -> DefinitionError:
        mark = node.start_mark
        return DefinitionError(f"{self.source}:{mark.line + 1}:{mark.column + 1}: {message}")

    def value(self, node: Node, path: DocPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(
                node, f"the document holds over {MAX_VALUES:,} values (aliases expand too far)"
            )
        if len(path) > MAX_DEPTH:
            raise self.fail(node, f"values are nested more than {MAX_DEPTH} deep")
        self.positions.setdefault(
            path, Position(node.start_mark.line + 1, node.start_mark.column + 1)
        )
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            self.check_tag(node, "seq")
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            self.check_tag(node, "map")
            return self.mapping(node, path)
        raise self.fail(node, f"unexpected YAML node {type(node).__name__}")

    def mapping(self, node: MappingNode, path: DocPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in _pairs(node):
            if key_node.tag == _CORE + "merge" or (
                isinstance(key_node, ScalarNode)
                and key_node.value == "<<"
                and key_node.style is None
            ):
                raise self.fail(key_node, "merge keys (<<) are not supported; write the keys out")
            if not isinstance(key_node, ScalarNode):
                raise self.fail(key_node, "a key must be text, not a list or mapping")
            key = key_node.value
            if key in result:
                first = self.positions.get((*path, key))
                at = f" (first at line {first.line})" if first else ""
                raise self.fail(key_node, f"key {key!r} is given twice{at}")
            self.positions[(*path, key)] = Position(
                key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
            result[key] = self.value(value_node, (*path, key))
        return result

    def check_tag(self, node: Node, kind: str) -> None:
        if node.tag != _CORE + kind:
            raise self.fail(node, f"tag {_shown(node.tag)} is not allowed here")

    def scalar(self, node: ScalarNode, path: DocPath) -> Any:
        text = node.value
        tag = node.tag
        explicit = getattr(node, "explicit_tag", False)
        if not explicit and node.style is None and tag in (_CORE + name for name in _RESOLVED):
            # A plain scalar: typed by the YAML 1.2 core schema, not by PyYAML's 1.1 guess.
            self.raw[path] = text
            return _core_value(text)
        if tag == _CORE + "str" or tag == _CORE + "timestamp":
            return text
        if tag in (_CORE + "int", _CORE + "float", _CORE + "bool", _CORE + "null"):
            value = _core_value(text)
            expected = {"int": int, "float": float, "bool": bool, "null": type(None)}[
                tag.removeprefix(_CORE)
            ]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise self.fail(node, f"{text!r} is not a valid {tag.removeprefix(_CORE)}")
            return value
        raise self.fail(node, f"tag {_shown(tag)} is not allowed (only plain YAML values)")


#: the tags PyYAML gives plain scalars; all of them are re-read by the core schema
_RESOLVED = ("str", "int", "float", "bool", "null", "timestamp", "value", "merge")


def _core_value(text: str) -> Any:
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text.lower() == "true"
    if _INT.match(text):
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text)
    if _FLOAT.match(text):
        lowered = text.lower()
        if lowered.lstrip("+-") in (".inf", ".nan"):
            return float(lowered.replace(".", ""))
        return float(text)
    return text


def _shown(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _pairs(node: MappingNode) -> Iterator[tuple[Node, Node]]:
    yield from node.value
