"""Workflows drawn as Mermaid and DOT: one shape per kind, compound steps boxed."""

from __future__ import annotations

import re
from pathlib import Path

import legato
from legato import Workflow
from legato.diagrams import to_dot, to_mermaid

ETL = f"{Path(__file__).parents[2] / 'examples' / 'etl.py'}:wf"


@legato.task(name="diagrams.work")
def work(x: object = None) -> object:
    return x


def every_kind() -> Workflow:
    wf = Workflow("every_kind")
    first = wf.step("first-step", work, x='say "hi"')
    sw = wf.switch("route", on=wf.param("mode"), needs=[first])
    sw.case("fast").step("quick", work)
    sw.default().step("slow", work)
    m = wf.map("each", over=[1, 2], max_parallel=2, needs=[sw])
    fetched = m.step("fetch", work, x=legato.item)
    m.step("store", work, x=fetched.output)
    loop = wf.loop("poll", max_iterations=3, needs=[m])
    checked = loop.step("check", work)
    loop.repeat_until(checked.output)
    wf.sub_workflow("child", "other_flow", version="2", needs=[loop])
    wf.sleep("nap", "5m", needs=[loop])
    wf.wait_for_signal("approve", "approval", needs=[loop])
    wf.set_vars("remember", seen=True, needs=[loop])
    wf.terminate("stop", when="${{ params.mode == 'stop' }}", needs=[loop])
    job = wf.group("job", needs=[loop])
    job.step("inside", work)
    job.step("tidy", work, after=["inside"])
    return wf


def nodes(text: str) -> dict[str, str]:
    """Mermaid node id -> the line declaring it."""
    found = {}
    for line in text.splitlines():
        m = re.match(r"\s*(n\d+)[\[\{\(>]", line)
        if m:
            found[m.group(1)] = line.strip()
    return found


def node_of(text: str, step_id: str) -> str:
    [line] = [v for v in nodes(text).values() if f'"{step_id}<br/>' in v]
    return line


def test_mermaid_draws_each_kind_in_its_own_shape() -> None:
    text = every_kind().to_mermaid()
    assert text.startswith("flowchart TD\n")
    shapes = {
        "first-step": ("[", "]"),
        "route": ("{", "}"),
        "each": ("[[", "]]"),
        "poll": ("{{", "}}"),
        "child": ("[/", "/]"),
        "nap": ("((", "))"),
        "approve": (">", "]"),
        "stop": ("([", "])"),
        "remember": ("[/", "\\]"),
        "job": ("(", ")"),
    }
    seen = set()
    for step_id, (opening, closing) in shapes.items():
        line = node_of(text, step_id)
        rest = re.match(r"n\d+(.*)", line).group(1)  # type: ignore[union-attr]
        assert rest.startswith(opening + '"') and rest.endswith('"' + closing), (step_id, line)
        seen.add(rest[: len(opening)] + rest[-len(closing) :])
    assert len(seen) == len(shapes)  # no two kinds share a shape
    assert "sub-workflow other_flow@2" in node_of(text, "child")
    assert "wait for signal approval" in node_of(text, "approve")
    assert "if params.mode == 'stop'" in node_of(text, "stop")
    assert "map (max 2)" in node_of(text, "each")
    assert "#quot;" not in node_of(text, "first-step")  # the input is not drawn, only the call


def test_mermaid_boxes_what_compound_steps_hold_and_draws_dependencies() -> None:
    text = every_kind().to_mermaid()
    ids = {re.search(r'"([^<"]+)<br/>', v).group(1): k for k, v in nodes(text).items()}  # type: ignore[union-attr]
    assert re.search(r'subgraph \S+\["route: case fast"\]', text)
    assert re.search(r'subgraph \S+\["route: default"\]', text)
    assert re.search(r'subgraph \S+\["each: each item"\]', text)
    assert re.search(r'subgraph \S+\["poll: each iteration"\]', text)
    assert f"{ids['route']} -.->|case fast| {ids['quick']}" in text
    assert f"{ids['route']} -.->|default| {ids['slow']}" in text
    assert f"{ids['each']} -.-> {ids['fetch']}" in text  # only the item's first step
    assert f"{ids['each']} -.-> {ids['store']}" not in text
    assert f"{ids['fetch']} --> {ids['store']}" in text  # inside the item
    assert f"{ids['first-step']} --> {ids['route']}" in text
    for after in ("child", "nap", "approve", "remember", "stop"):
        assert f"{ids['poll']} --> {ids[after]}" in text
    assert re.search(r'subgraph \S+\["job: its steps"\]', text)
    assert f"{ids['job']} -.-> {ids['inside']}" in text
    assert f"{ids['inside']} -. after .-> {ids['tidy']}" in text  # an order, not a need
    # Inside a box, between its subgraph line and its end.
    box = text.split('["each: each item"]', 1)[1].split("end", 1)[0]
    assert '"fetch<br/>' in box and '"store<br/>' in box and '"check<br/>' not in box


def test_dot_draws_the_same_graph() -> None:
    text = every_kind().to_dot()
    assert text.startswith('digraph "every_kind" {') and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")  # every subgraph closed
    shapes = {
        "first-step": "box",
        "route": "diamond",
        "each": "box3d",
        "poll": "hexagon",
        "child": "component",
        "nap": "circle",
        "approve": "cds",
        "stop": "doubleoctagon",
        "remember": "parallelogram",
        "job": "folder",
    }
    ids = {}
    for line in text.splitlines():
        m = re.match(r'\s*(n\d+) \[label="([^\\"]+)\\n.*", shape=(\w+)\];', line)
        if m:
            ids[m.group(2)] = m.group(1)
            if m.group(2) in shapes:
                assert m.group(3) == shapes[m.group(2)], line
    assert set(shapes) <= set(ids)
    assert f'{ids["route"]} -> {ids["quick"]} [style=dotted, label="case fast"];' in text
    assert f"{ids['fetch']} -> {ids['store']};" in text
    assert 'label="each: each item"; style=dashed;' in text
    assert 'label="job: its steps"; style=dashed;' in text
    assert f'{ids["inside"]} -> {ids["tidy"]} [style=dashed, label="after"];' in text
    assert "subgraph cluster_" in text


def test_the_command_prints_either_format() -> None:
    from typer.testing import CliRunner

    from legato.cli.main import app

    runner = CliRunner()
    dot = runner.invoke(app, ["graph", ETL])
    assert dot.exit_code == 0, dot.output
    assert dot.stdout == to_dot(_etl())
    mermaid = runner.invoke(app, ["graph", ETL, "--format", "mermaid"])
    assert mermaid.exit_code == 0, mermaid.output
    assert mermaid.stdout == to_mermaid(_etl())
    bad = runner.invoke(app, ["graph", ETL, "--format", "png"])
    assert bad.exit_code == 2
    missing = runner.invoke(app, ["graph", ETL.replace("etl.py", "none.py")])
    assert missing.exit_code == 2
    assert "no such file" in missing.output and "Traceback" not in missing.output


def _etl() -> legato.WorkflowSpec:
    from legato.cli.loading import load_workflow

    workflow = load_workflow(ETL)
    assert isinstance(workflow, Workflow)
    return workflow.spec


def test_the_dot_output_renders_with_graphviz(tmp_path: Path) -> None:
    import html
    import shutil
    import subprocess

    dot = shutil.which("dot")
    assert dot is not None, "Graphviz `dot` is required (.ci/run installs it)"
    source = tmp_path / "every_kind.dot"
    source.write_text(every_kind().to_dot())
    rendered = subprocess.run(
        [dot, "-Tsvg", str(source)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stderr == ""  # no syntax warnings either
    svg = html.unescape(rendered.stdout)
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for step_id in (
        "first-step",
        "route",
        "quick",
        "slow",
        "fetch",
        "store",
        "check",
        "stop",
        "tidy",
    ):
        assert f">{step_id}</text>" in svg, step_id
    assert "each: each item" in svg and "route: case fast" in svg
