"""``legato graph`` draws definition files: DOT that Graphviz renders, and Mermaid."""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

import pytest

from cli.helpers import Invoke

EXAMPLES = Path(__file__).parents[2] / "examples" / "yaml"
FILES = sorted(EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_example_renders_with_graphviz(
    legato: Invoke, path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGATO_ALLOW_SHELL", "1")
    result = legato("graph", str(path))
    assert result.exit_code == 0, result.output
    dot = shutil.which("dot")
    assert dot is not None, "Graphviz `dot` is required (.ci/run installs it)"
    source = tmp_path / "flow.dot"
    source.write_text(result.stdout)
    rendered = subprocess.run(
        [dot, "-Tsvg", str(source)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stderr == ""
    assert "</svg>" in html.unescape(rendered.stdout)


def test_jobs_are_drawn_with_their_stages(legato: Invoke) -> None:
    result = legato("graph", str(EXAMPLES / "etl.yaml"), "--format", "mermaid")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("flowchart")
    for step in ("extract", "fetch", "priced", "region_total", "report", "grand_total"):
        assert step in text, step
