"""What capturing a task's log lines costs: a task logging many lines, captured or not.

One in-process worker runs one step that writes ``--lines`` lines through
``ctx.logger`` (or ``print``); the table gives the run's wall time with capture
on and off (``log_lines=0``), the captured lines per second, and the write
transactions the run committed (no commit is spent per line).

    .venv/bin/python benchmarks/task_logs.py                 # both databases
    .venv/bin/python benchmarks/task_logs.py --db sqlite --lines 10000 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from databases import database
from per_step import count_commits

import legato


@legato.task(name="bench.logs")
def logs(n: int, ctx: legato.Context) -> int:
    for i in range(n):
        ctx.logger.info("row %d loaded", i)
    return n


@legato.task(name="bench.prints")
def prints(n: int) -> int:
    for i in range(n):
        print("row", i, "loaded")
    return n


def measure(kind: str, task: legato.Task, n: int, captured: bool) -> tuple[float, int, int]:
    """Seconds from start to finish, commits, and lines stored."""
    wf = legato.Workflow(f"bench_{task.name.replace('.', '_')}")
    wf.step("loud", task, n=n)
    with database(kind) as url, legato.Client(url) as client:
        worker = legato.Worker(
            client, concurrency=1, log_lines=n + 10 if captured else 0, log_bytes=1 << 30
        )
        commits = count_commits(client)
        began = time.perf_counter()
        run_id = client.start(wf)
        worker.run(until=lambda _: client.get(run_id, with_steps=False).finished)
        elapsed = time.perf_counter() - began
        worker.close()
        stored = len(client.logs(run_id, limit=10_000)) if n <= 10_000 else -1
    return elapsed, commits[0], stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("| database | task | lines | s captured | s not captured | lines/s captured | commits |")
    print("|---|---|---|---|---|---|---|")
    saved = sys.stdout
    for kind in args.db or ["sqlite", "postgres"]:
        for task in (logs, prints):
            on, off, commits = [], [], []
            for _ in range(args.runs):
                sys.stdout = open("/dev/null", "w")  # the prints go nowhere  # noqa: SIM115
                try:
                    seconds, count, stored = measure(kind, task, args.lines, True)
                    on.append(seconds)
                    commits.append(count)
                    off.append(measure(kind, task, args.lines, False)[0])
                finally:
                    sys.stdout.close()
                    sys.stdout = saved
                assert stored in (args.lines, -1), stored
            s_on, s_off = statistics.median(on), statistics.median(off)
            print(
                f"| {kind} | {task.name} | {args.lines:,} | {s_on:.3f} | {s_off:.3f} "
                f"| {args.lines / s_on:,.0f} | {statistics.median(commits):.0f} |"
            )


if __name__ == "__main__":
    main()
