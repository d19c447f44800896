"""Run every peer benchmark in the peers' environment and print their rows of the
comparison table (markdown), or their JSON lines with ``--json``.

    python3 benchmarks/peers/run_all.py                  # all peers, median of 3
    python3 benchmarks/peers/run_all.py --runs 1 --peers pgqueuer absurd
    python3 benchmarks/peers/run_all.py --json > peers.jsonl

Each peer runs in its own process, one after the other; a peer that fails is
reported on stderr and left out of the table. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = HERE / ".venv" / "bin" / "python"

#: name -> script and its extra arguments, and the workloads it runs (None: all)
PEERS: dict[str, tuple[list[str], tuple[str, ...] | None]] = {
    "pgqueuer": (["pgqueuer_bench.py"], None),
    # PgQueuer's best W1 here: bigger dequeue batches (they do not help the others)
    "pgqueuer-batch100": (["pgqueuer_bench.py", "--batch-size", "100"], ("W1",)),
    "absurd": (["absurd_bench.py"], None),
    "procrastinate": (["procrastinate_bench.py"], None),
    "celery": (["celery_bench.py"], None),
    "dbos-sqlite": (["dbos_bench.py", "--database", "sqlite"], None),
    "dbos-postgres": (["dbos_bench.py", "--database", "postgres"], None),
}
WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
TIMEOUT = 1200  # seconds for one peer's whole run
HEADERS = {
    "W1": "W1 jobs/s",
    "W2": "W2 ms/step",
    "W3": "W3 s",
    "W4": "W4 runs/s",
    "W5": "W5 steps/s",
}


def run_peer(name: str, runs: int, workloads: list[str]) -> list[dict[str, object]]:
    (script, *extra), only = PEERS[name]
    if only is not None:
        workloads = [w for w in workloads if w in only]
    if not workloads:
        return []
    command = [str(PYTHON), str(HERE / script), *extra, "--runs", str(runs)]
    command += ["--workloads", *workloads]
    print(f"# {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the script stop its workers (harness.parse_args turns it into
        # SystemExit); SIGKILL only if it does not end soon after.
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        print(f"# {name}: stopped after {TIMEOUT} s", file=sys.stderr, flush=True)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    print(
        f"# {name}: {len(rows)} workloads in {time.monotonic() - started:.0f} s"
        + (f", exit {proc.returncode}" if proc.returncode else ""),
        file=sys.stderr,
        flush=True,
    )
    return rows


def figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[dict[str, object]]) -> str:
    """One line per system and database, one column per workload (median of runs)."""
    systems: dict[tuple[str, str], dict[str, dict[str, object]]] = {}
    for row in rows:
        name = f"{row['system']} {row['version']}"
        if row.get("variant"):
            name += f" ({row['variant']})"
        systems.setdefault((name, str(row["database"])), {})[str(row["workload"])] = row
    lines = [
        "| system | database | " + " | ".join(HEADERS[w] for w in WORKLOADS) + " |",
        "|---|---|" + "---:|" * len(WORKLOADS),
    ]
    for (name, database), by_workload in systems.items():
        cells = [
            figure(float(by_workload[w]["median"])) if w in by_workload else "-"  # type: ignore[arg-type]
            for w in WORKLOADS
        ]
        lines.append(f"| {name} | {database} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="timed runs per workload (median)")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    args = parser.parse_args()
    if not PYTHON.exists():
        sys.exit(f"no peers environment at {PYTHON.parent.parent}: run benchmarks/peers/setup.sh")
    rows: list[dict[str, object]] = []
    for name in args.peers:
        rows += run_peer(name, args.runs, args.workloads)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(table(rows))


if __name__ == "__main__":
    main()
