"""The JSON Schema of definition files agrees with the loader on good and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cli.helpers import Invoke
from legato.files import json_schema, to_data
from legato.files.documents import read_documents

from .test_export import CASES

BAD = Path(__file__).with_name("bad")


def validator() -> jsonschema.protocols.Validator:
    schema = json_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[c[0] for c in CASES])
def test_every_export_is_valid_by_the_schema(name: str, spec: object) -> None:
    validator().validate(to_data(spec))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "17_unknown_top_key.yaml",
        "18_no_kind.yaml",
        "19_typo_with.yaml",
        "21_unknown_param_type.yaml",
        "25_priority_high.yaml",
        "28_terminate_status.yaml",
        "47_wrong_with_type.yaml",
    ],
)
def test_files_of_the_wrong_shape_are_invalid_by_the_schema_too(name: str) -> None:
    (document,) = read_documents(BAD / name)
    assert list(validator().iter_errors(document.data))


def test_legato_schema_prints_it(legato: Invoke) -> None:
    result = legato("schema")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed == json_schema()
    assert printed["$schema"].startswith("https://json-schema.org/")
    assert "uses" in json.dumps(printed)
