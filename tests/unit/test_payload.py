"""The JSON gate: what crosses a process boundary, and the errors naming the path."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
from typing import Any

import pydantic
import pytest

from legato.errors import PayloadError
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES, dumps, loads, to_json

WHAT = "step 'load' output"


def refused(value: Any) -> str:
    with pytest.raises(PayloadError) as info:
        to_json(value, what=WHAT)
    return str(info.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, "$ is of type set, which JSON cannot carry (convert it to a list)"),
        (
            {"tags": frozenset()},
            "$.tags is of type frozenset, which JSON cannot carry (convert it to a list)",
        ),
        (float("nan"), "$ is nan, which JSON cannot represent"),
        ({"x": [1.0, float("inf")]}, "$.x[1] is inf, which JSON cannot represent"),
        ({"x": float("-inf")}, "$.x is -inf, which JSON cannot represent"),
        ("a\x00b", "$ is a string containing a NUL character (\\x00)"),
        ({"rows": ["ok", "bad\x00"]}, "$.rows[1] is a string containing a NUL character (\\x00)"),
        ({"k\x00": 1}, "$ has a key containing a NUL character"),
        ({"deep": {"k\x00": 1}}, "$.deep has a key containing a NUL character"),
        (
            {"s": ["ok", "x\ud800"]},
            "$.s[1] is a string with a lone surrogate, which UTF-8 cannot encode",
        ),
        ({"k\udfff": 1}, "$ has a key with a lone surrogate"),
        ({1: "a"}, "$ has a key 1 of type int; JSON object keys must be strings"),
        (
            {"m": {(1, 2): "a"}},
            "$.m has a key (1, 2) of type tuple; JSON object keys must be strings",
        ),
        (b"raw", "$ is of type bytes, which JSON cannot carry (decode or base64-encode it)"),
        (
            {"b": bytearray(b"x")},
            "$.b is of type bytearray, which JSON cannot carry (decode or base64-encode it)",
        ),
        (
            {"rows": [{}, {}, {"when": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}]},
            "$.rows[2].when is of type datetime, which JSON cannot carry "
            "(convert it with .isoformat())",
        ),
        (
            {"d": dt.date(2024, 1, 2)},
            "$.d is of type date, which JSON cannot carry (convert it with .isoformat())",
        ),
        ({"n": decimal.Decimal("1.5")}, "$.n is of type Decimal, which JSON cannot carry"),
        ({"o": object()}, "$.o is of type object, which JSON cannot carry"),
        (
            {"with space": {1}},
            '$["with space"] is of type set, which JSON cannot carry (convert it to a list)',
        ),
        (
            {"1st": [{"é": {2}}]},
            '$["1st"][0].é is of type set, which JSON cannot carry (convert it to a list)',
        ),
    ],
)
def test_refused_values_name_the_path(value: Any, message: str) -> None:
    assert refused(value) == f"{WHAT}: {message}"


def test_plain_values_pass_unchanged() -> None:
    value = {"s": "é ☃", "i": -3, "f": 1.5, "b": True, "n": None, "l": [1, [2, {"x": []}]]}
    plain, text = to_json(value, what=WHAT)
    assert plain == value
    assert json.loads(text) == value
    assert text == dumps(value)
    assert "é ☃" in text  # not escaped
    assert ": " not in text and ", " not in text
    assert loads(text) == value
    assert loads(None) is None


def test_tuples_become_lists() -> None:
    plain, text = to_json({"t": (1, (2, 3))}, what=WHAT)
    assert plain == {"t": [1, [2, 3]]}
    assert text == '{"t":[1,[2,3]]}'


class Level(enum.IntEnum):
    HIGH = 3


class Count(int):
    pass


def test_bool_and_int_subclasses_stay_numbers() -> None:
    """Booleans stay booleans; an int subclass (an IntEnum, say) becomes a plain int."""
    plain, text = to_json([True, False, 0, 2**70, Level.HIGH, Count(5)], what=WHAT)
    assert plain == [True, False, 0, 2**70, 3, 5]
    assert [type(v) for v in plain] == [bool, bool, int, int, int, int]  # True == 1 otherwise
    assert text == f"[true,false,0,{2**70},3,5]"
    assert loads(text) == plain


class Point(pydantic.BaseModel):
    x: int
    when: dt.datetime
    tags: set[str] = set()


@dataclasses.dataclass
class Row:
    id: int
    point: Point
    children: list[Row] = dataclasses.field(default_factory=list)


def test_pydantic_models_and_dataclasses_become_json() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    value = Row(1, Point(x=2, when=when, tags={"a"}), [Row(2, Point(x=3, when=when))])
    plain, text = to_json(value, what=WHAT)
    assert plain == {
        "id": 1,
        "point": {"x": 2, "when": "2024-05-06T07:08:09Z", "tags": ["a"]},
        "children": [
            {"id": 2, "point": {"x": 3, "when": "2024-05-06T07:08:09Z", "tags": []}, "children": []}
        ],
    }
    assert json.loads(text) == plain


def test_a_dataclass_with_a_bad_field_names_its_path() -> None:
    @dataclasses.dataclass
    class Bad:
        ok: int
        bad: set[int]

    assert (
        refused({"items": [Bad(1, {2})]})
        == f"{WHAT}: $.items[0].bad is of type set, which JSON cannot carry (convert it to a list)"
    )


def test_a_dataclass_class_is_not_data() -> None:
    assert "is of type type, which JSON cannot carry" in refused(Row)


def test_size_limit() -> None:
    _, text = to_json("x" * 98, what=WHAT, max_bytes=100)  # exactly 100 bytes with quotes
    assert len(text.encode()) == 100
    with pytest.raises(PayloadError) as info:
        to_json("x" * 99, what=WHAT, max_bytes=100)
    assert str(info.value) == (
        f"{WHAT} is 101 bytes of JSON, over the limit of 100 bytes "
        "(store large data elsewhere and pass a reference, or raise max_payload_bytes)"
    )


def test_size_limit_counts_utf8_bytes() -> None:
    with pytest.raises(PayloadError, match="is 22 bytes of JSON, over the limit of 21 bytes"):
        to_json("é" * 10, what=WHAT, max_bytes=21)


def test_default_and_no_limit() -> None:
    big = "x" * (DEFAULT_MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(PayloadError, match="over the limit of 1,048,576 bytes"):
        to_json(big, what=WHAT)
    plain, _ = to_json(big, what=WHAT, max_bytes=None)
    assert plain == big
