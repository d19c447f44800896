"""Every YAML example runs with ``legato run`` as its comment says, on both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.helpers import Invoke

EXAMPLES = Path(__file__).parents[2] / "examples" / "yaml"
SHOP = EXAMPLES / "shop.py"

#: example -> (params, expected outputs, or a check of them)
EXPECTED: dict[str, tuple[list[str], dict[str, object]]] = {
    "etl.yaml": (
        ["day=2024-05-02"],
        {
            "report": {
                "currency": "EUR",
                "day": "2024-05-02",
                "regions": ["eu", "us", "apac"],
                "total": 3106.5,
            }
        },
    ),
    "task.yaml": (["sku=book"], {"on_shelf": 3, "restocked": True}),
    "foreach.yaml": (
        [],
        {"total": 3039.0, "shipments": ["post-pen-21", "post-book-28", "post-piano-35"]},
    ),
    "parallel.yaml": ([], {"summary": {"books": {"sku": "book", "ordered": 10, "note": ""}}}),
    "switch.yaml": (["carrier=express"], {"tracking": "express-kazoo-35", "box": "parcel"}),
    "until.yaml": (["boxes=3"], {"packed": 3}),
    "trigger.yaml": ([], {"ordered": [{"ordered": 10}, {"ordered": 10}]}),
    "waits.yaml": (
        ["pause=100ms"],
        {"approved_by": "nobody (timed out)", "tracking": "express-piano-35"},
    ),
    "ending.yaml": (["sku=pen"], {"sold": True, "tracking": "post-pen-21"}),
    "shell.yaml": ([f"folder={EXAMPLES}"], {"files": len(list(EXAMPLES.iterdir()))}),
}


def test_every_example_is_run_here() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_example_runs(
    legato: Invoke, db_url: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params, outputs = EXPECTED[name]
    if name == "shell.yaml":
        monkeypatch.setenv("LEGATO_ALLOW_SHELL", "1")
    args = ["run", str(EXAMPLES / name), "--import", str(SHOP), "--url", db_url, "-q"]
    for pair in params:
        args += ["-p", pair]
    result = legato(*args)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    for key, value in outputs.items():
        if key == "summary":  # parallel: one branch checked whole, the other by shape
            assert got[key]["books"] == value["books"]  # type: ignore[index]
            assert isinstance(got[key]["stationery"], int)
        else:
            assert got[key] == value, (key, got)


def test_a_raise_fails_the_run_with_its_reason(legato: Invoke, sqlite_url: str) -> None:
    result = legato(
        "run",
        str(EXAMPLES / "ending.yaml"),
        "--import",
        str(SHOP),
        "--url",
        sqlite_url,
        "-q",
        "-p",
        "sku=unicorn",
    )
    assert result.exit_code == 1, result.output
    assert "unknown item unicorn" in result.stderr
