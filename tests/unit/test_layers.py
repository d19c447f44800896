"""Layers: what each part of legato may import, so the core never leans on a front end."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "legato"

#: package -> the legato packages it must not import
FORBIDDEN = {
    "model": ("legato.define", "legato.cli", "legato.store", "legato.worker", "legato.engine"),
    "engine": ("legato.define", "legato.cli", "legato.store", "legato.worker"),
    "expressions.py": ("legato.define", "legato.cli", "legato.store", "legato.model"),
    "builtin": (
        "legato.define",
        "legato.cli",
        "legato.store",
        "legato.worker",
        "legato.engine",
        "legato.model",
    ),
    "filters.py": (
        "legato.define",
        "legato.cli",
        "legato.store",
        "legato.model",
        "legato.engine",
        "legato.expressions",
    ),
    "store": ("legato.define", "legato.cli", "legato.worker"),
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_a_layer_does_not_import_the_layers_above_it(part: str) -> None:
    target = SRC / part
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files
    for path in files:
        for name in imported(path):
            bad = [f for f in FORBIDDEN[part] if name == f or name.startswith(f + ".")]
            assert not bad, f"{path.relative_to(SRC)} imports {name}"
