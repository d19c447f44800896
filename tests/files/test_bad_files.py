"""A corpus of broken definition files: each gets its own clear error, never a traceback,
and nothing is stored.

Each file in ``bad/`` starts with ``# expect: <text>`` (JSON files are listed
below): ``legato validate`` must exit 1 printing that text at the file's name
with a line and column, and ``legato run`` must exit 2 with one error line
before any database is opened or written.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.helpers import Invoke
from legato import Client

from .conftest import TASKS

BAD = Path(__file__).with_name("bad")
FILES = sorted(BAD.iterdir())
JSON_EXPECT = {
    "08_json_syntax.json": "not valid JSON",
    "44_json_unknown_key.json": "unknown key 'retries' (did you mean 'retry'?)",
}
#: problems found before anything has a line: a file of none, or one JSON can't read
_NO_LINE = {"06_empty.yaml"}


def expected(path: Path) -> str:
    if path.suffix == ".json":
        return JSON_EXPECT[path.name]
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} names no expected error"
    return first.removeprefix("# expect: ")


def test_the_corpus_is_big_enough() -> None:
    assert len(FILES) >= 40


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_validate_names_the_error_at_its_line(legato: Invoke, path: Path) -> None:
    result = legato("validate", "--import", str(TASKS), str(path))
    assert result.exit_code == 1, result.output
    assert expected(path) in result.stderr, result.stderr
    assert "Traceback" not in result.output
    if path.name not in _NO_LINE:
        assert re.search(re.escape(str(path)) + r":\d+:\d+: ", result.stderr), result.stderr
    assert not Path("legato.db").exists()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_run_refuses_it_and_stores_nothing(legato: Invoke, path: Path) -> None:
    url = "sqlite:///runs.db"
    result = legato("run", str(path), "--url", url)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert not Path("runs.db").exists()


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    legato: Invoke, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\nsteps:\n  - id: a\n    uses: files.echo\n    with:\n      x: '")
    with huge.open("a") as f:
        f.write("x" * (3 * 1024 * 1024) + "'\n")
    result = legato("validate", str(huge))
    assert result.exit_code == 1
    assert "over the limit of 2,097,152" in result.stderr
    assert "Traceback" not in result.output


def test_refused_files_store_nothing_on_postgres(legato: Invoke, pg_url: str) -> None:
    for path in FILES[:12]:
        result = legato("run", str(path), "--url", pg_url)
        assert result.exit_code == 2, result.output
    with Client(pg_url) as client:
        assert client.list_runs() == []
