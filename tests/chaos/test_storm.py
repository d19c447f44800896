"""A short kill storm: four ``legato worker`` processes, one SIGKILLed every two seconds and
replaced, over 120 runs of five chained steps whose task allows no retries.

Every run completes with the right output; every step's side effect (written
by the task to a table of its own) happened at least once; legato recorded each
step's completion exactly once; and the only re-executions are attempts lost
with a killed worker, each on record. ``benchmarks/chaos.py`` runs the long storm.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .storm import STEPS, storm

pytestmark = pytest.mark.chaos


def test_a_kill_storm_loses_nothing_and_completes_each_step_once(
    db_url: str, tmp_path: Path
) -> None:
    report = storm(db_url, tmp_path, runs=120, workers=4, kill_every=2.0, max_kills=3, hold=0.05)
    print(report)
    assert report.kills >= 1
    assert report.outputs_ok
    every_step = {(run, f"s{i}") for run, _ in report.completions for i in range(STEPS)}
    assert set(report.effects) == every_step  # each side effect at least once
    assert set(report.completions) == every_step
    assert set(report.completions.values()) == {1}  # each completion exactly once
    assert report.re_executions <= report.lost_attempts  # repeats only after a lost worker
    assert report.stderr_tracebacks == 0
