"""Tagged tasks, as ddeutil-workflow's registry tags them: ``uses: tasks/extract@v1``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.helpers import Invoke
from legato import task
from legato.errors import DefinitionError

from .conftest import TASKS


def test_a_tag_is_part_of_the_name() -> None:
    @task(name="tag_test/extract", tag="v2")
    def extract() -> int:
        return 2

    assert extract.name == "tag_test/extract@v2"
    with pytest.raises(DefinitionError, match="tag 'v 2' must be letters"):
        task(name="tag_test/other", tag="v 2")(lambda: 1)


def test_a_file_calls_a_tagged_task_by_its_tag(
    legato: Invoke, sqlite_url: str, tmp_path: Path
) -> None:
    flow = tmp_path / "tagged.yaml"
    flow.write_text(
        "name: tagged\nsteps:\n  - id: a\n    uses: tasks/extract@v1\n"
        "    with: {source: ftp}\noutputs: {got: '${{ steps.a.output }}'}\n"
    )
    result = legato("run", str(flow), "--import", str(TASKS), "--url", sqlite_url, "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"got": {"source": "ftp", "version": 1}}
