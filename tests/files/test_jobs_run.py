"""Jobs written in a file run as they read: in order, per matrix combination, after their
needs, with ``matrix`` reaching through maps inside, on both databases."""

from __future__ import annotations

import legato
from legato import Client, RunStatus
from legato.cli.loading import load_module
from legato.files import load_text

from .conftest import TASKS

load_module(str(TASKS))

FLOW = """
name: sales
params:
  day: {type: date, default: "2024-05-01"}
jobs:
  extract:
    strategy:
      matrix: {region: [eu, us]}
      include: [{region: eu, currency: EUR}]
      max_parallel: 1
    stages:
      - id: fetch
        uses: files.echo
        with: {x: [1, 2]}
      - id: label
        foreach: "${{ steps.fetch.output }}"
        uses: files.echo
        with: {x: "${{ matrix.region }}-${{ item }}-${{ params.day | fmt('%d.%m') }}"}
      - id: skipped
        if: matrix.region == 'nowhere'
        uses: files.echo
      - id: after_skip
        uses: files.echo
        with: {x: "${{ matrix.currency | default('USD') }}"}
    outputs:
      labels: "${{ steps.label.output }}"
      currency: "${{ steps.after_skip.output }}"
  report:
    needs: extract
    stages:
      - id: total
        uses: files.echo
        with: {x: "${{ jobs.extract.outputs | length }}"}
outputs:
  extract: "${{ jobs.extract.outputs }}"
  count: "${{ jobs.report.outputs }}"
"""


def test_a_matrix_job_then_a_job_needing_it(db_url: str) -> None:
    (spec,) = load_text(FLOW, "sales.yaml")
    with Client(db_url) as client:
        run = legato.run(spec, url=db_url, timeout=60)
        run = client.get(run.id)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.outputs == {
        "extract": [
            {"labels": ["eu-1-01.05", "eu-2-01.05"], "currency": "EUR"},
            {"labels": ["us-1-01.05", "us-2-01.05"], "currency": "USD"},
        ],
        "count": 2,
    }
    assert run.steps["extract[0].skipped"].status.value == "skipped"
    assert run.steps["extract[0].after_skip"].status.value == "completed"


FAILING = """
name: cleanup
stages:
  - id: first
    uses: files.add
    with: {a: "not a number"}
  - id: second
    uses: files.echo
  - id: always_report
    if: always()
    uses: files.echo
    with: {x: "${{ steps.first.status }}"}
  - id: on_failure
    if: failure()
    uses: files.echo
    with: {x: handled}
"""


def test_stages_after_a_failure_stop_but_those_reacting_to_it_run(db_url: str) -> None:
    (spec,) = load_text(FAILING, "cleanup.yaml")
    run = legato.run(spec, url=db_url, timeout=60)
    assert run.status is RunStatus.FAILED
    assert run.steps["second"].status.value == "cancelled"
    assert run.steps["always_report"].output == "failed"
    assert run.steps["on_failure"].output == "handled"
    assert "first" in (run.error.step or "")  # type: ignore[union-attr]
