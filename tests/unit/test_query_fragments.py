"""Named queries may share fragments (``-- fragment: <name>``, used as ``{{name}}``)."""

from __future__ import annotations

import pytest

from legato.store import queries


def load(monkeypatch: pytest.MonkeyPatch, text: str) -> dict[str, str]:
    monkeypatch.setattr(queries, "read_sql", lambda dialect, filename: text)
    queries.load_queries.cache_clear()
    try:
        return queries.load_queries("test")
    finally:
        queries.load_queries.cache_clear()


def test_a_fragment_is_written_into_each_query_that_uses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = load(
        monkeypatch,
        "-- the room\n-- fragment: room\nAND x > 0\n\n"
        "-- name: first\nSELECT 1 FROM t WHERE y = 1 {{room}};\n\n"
        "-- name: second\nSELECT 2 FROM t WHERE {{room}}\n",
    )
    assert found == {
        "first": "SELECT 1 FROM t WHERE y = 1 AND x > 0",
        "second": "SELECT 2 FROM t WHERE AND x > 0",
    }


def test_an_unknown_fragment_or_a_name_given_twice_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match=r"unknown fragment \{\{nope\}\}"):
        load(monkeypatch, "-- name: q\nSELECT {{nope}}\n")
    with pytest.raises(ValueError, match="defines fragment 'f' twice"):
        load(monkeypatch, "-- fragment: f\nA\n-- fragment: f\nB\n-- name: q\nSELECT 1\n")


def test_no_shipped_query_is_left_with_a_fragment_unwritten() -> None:
    for dialect in ("sqlite", "postgres"):
        assert not [n for n, q in queries.load_queries(dialect).items() if "{{" in q]
