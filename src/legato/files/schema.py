"""The JSON Schema of definition files, made from the models that validate them.

Editors that read JSON Schema (VS Code's YAML extension, JetBrains IDEs)
check and complete workflow files with it: ``legato schema > legato.schema.json``
and point the editor at it, or start a file with
``# yaml-language-server: $schema=legato.schema.json``.
"""

from __future__ import annotations

from typing import Any

from legato.files.format import Definition

__all__ = ["SCHEMA_ID", "json_schema"]

SCHEMA_ID = "https://legato.dev/schemas/workflow.json"


def json_schema() -> dict[str, Any]:
    """The schema of one workflow document (the keys as written in files)."""
    schema = Definition.model_json_schema(by_alias=True, mode="validation")
    schema["$id"] = SCHEMA_ID
    schema.setdefault("description", "A legato workflow definition (YAML or JSON).")
    return schema
