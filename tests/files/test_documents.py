"""Reading definition text: YAML 1.2 core values, positions, and what is refused."""

from __future__ import annotations

import pytest

from legato.errors import DefinitionError
from legato.files.documents import parse_documents


def one(text: str) -> dict:
    documents = parse_documents(text, "t.yaml")
    assert len(documents) == 1
    return documents[0].data


def test_values_are_read_by_the_yaml_1_2_core_schema() -> None:
    data = one(
        "on: x\nno: no\nt: 1:30\nd: 2024-01-01\nhex: 0x1F\noct: 0o17\nf: 1e5\n"
        "inf: .inf\nnull1: ~\nnull2:\nyes: yes\nb: True\ns: '12'\n"
    )
    assert data == {
        "on": "x",
        "no": "no",
        "t": "1:30",
        "d": "2024-01-01",
        "hex": 31,
        "oct": 15,
        "f": 100000.0,
        "inf": float("inf"),
        "null1": None,
        "null2": None,
        "yes": "yes",
        "b": True,
        "s": "12",
    }


def test_keys_are_text_as_written() -> None:
    assert one("1: a\ntrue: b\nnull: c\n") == {"1": "a", "true": "b", "null": "c"}


def test_explicit_core_tags_are_honoured_and_checked() -> None:
    assert one("a: !!str 123\nb: !!float 1\n") == {"a": "123", "b": 1.0}
    with pytest.raises(DefinitionError, match=r"t.yaml:1:4: 'x' is not a valid int"):
        one("a: !!int x\n")


def test_positions_are_kept_for_every_value_and_key() -> None:
    document = parse_documents("a:\n  b:\n    - 1\n    - {c: 2}\n", "t.yaml")[0]
    assert document.where(("a", "b", 1, "c")) == "t.yaml:4:8"
    assert document.where(("a", "b", 0)) == "t.yaml:3:7"
    # A path that was never written is placed at the nearest value around it.
    assert document.where(("a", "b", 1, "missing")) == "t.yaml:4:7"


def test_the_text_of_a_plain_scalar_is_kept() -> None:
    document = parse_documents("version: 1.10\n", "t.yaml")[0]
    assert document.data == {"version": 1.1}
    assert document.raw[("version",)] == "1.10"


def test_several_documents_in_one_file() -> None:
    documents = parse_documents("name: a\n---\nname: b\n", "t.yaml")
    assert [d.data for d in documents] == [{"name": "a"}, {"name": "b"}]
    assert [d.index for d in documents] == [0, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\n", "t.yaml:2:1: key 'a' is given twice (first at line 1)"),
        ("a: !!python/name:os.system x\n", "tag !!python/name:os.system is not allowed"),
        ("a: [1, 2\n", "t.yaml:2:1: not valid YAML"),
        ("<<: {a: 1}\n", "merge keys (<<) are not supported"),
        ("? [a]\n: 1\n", "a key must be text"),
        ("a: &x [*x]\n", "nested more than"),
        ("", "holds no workflow"),
    ],
)
def test_refused_text_is_named_at_its_place(text: str, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_documents(text, "t.yaml")
    assert message in str(info.value)


def test_json_is_read_by_json_and_positioned_by_the_composer() -> None:
    document = parse_documents('{"a": {"b": [1, {"c": 2}]}}', "x.json", json_syntax=True)[0]
    assert document.data == {"a": {"b": [1, {"c": 2}]}}
    assert document.where(("a", "b", 1, "c")) == "x.json:1:18"
    with pytest.raises(DefinitionError, match=r"x.json:2:7: not valid JSON"):
        parse_documents('{"a": 1,\n "b": }', "x.json", json_syntax=True)
    with pytest.raises(DefinitionError, match="key 'a' is given twice"):
        parse_documents('{"a": 1, "a": 2}', "x.json", json_syntax=True)
