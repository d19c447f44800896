"""The long kill storm: 4 worker processes over 500 workflows of 5 steps, a random one
SIGKILLed every 2 seconds and replaced, on SQLite and PostgreSQL.

Reports, per database, how long it took, how many kills, how many steps ran more
than once (re-executions) and how many lost attempts legato recorded; checks that
every run completed with the right output, every side effect happened at least
once and every completion was recorded exactly once.

    .venv/bin/python benchmarks/chaos.py                 # both databases
    .venv/bin/python benchmarks/chaos.py --db postgres --runs 500 --kill-every 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from databases import database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chaos.storm import storm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=2.0)
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    failures = 0
    print("| database | runs x steps | kills | seconds | re-executions | lost attempts | ok |")
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        with database(kind) as url, tempfile.TemporaryDirectory() as folder:
            report = storm(
                url, Path(folder), runs=args.runs, workers=args.workers, kill_every=args.kill_every
            )
        ok = (
            report.outputs_ok
            and set(report.completions.values()) == {1}
            and len(report.completions) == report.steps
            and len(report.effects) == report.steps
            and report.re_executions <= report.lost_attempts
        )
        failures += not ok
        print(
            f"| {kind} | {report.runs} x 5 | {report.kills} | {report.seconds:.1f} "
            f"| {report.re_executions} | {report.lost_attempts} | {'yes' if ok else 'NO'} |",
            flush=True,
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
