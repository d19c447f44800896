"""Cost per item of a map: does a 10,000-item map cost no more per item than a 100-item one,
and do two worker processes finish a big map sooner than one?

A map step calls a no-op task once per item of a list known only at run time.
Each case starts one run and times its workers, from the moment they are all
ready until the run has finished; the figure is the median over several runs.

    .venv/bin/python benchmarks/map_fanout.py                       # both databases
    .venv/bin/python benchmarks/map_fanout.py --db postgres --items 10000 --processes 1 2
    .venv/bin/python benchmarks/map_fanout.py --items 1000 10000 --max-parallel 0 100 --processes 1
    LEGATO_BENCH_PG=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/map_fanout.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from typing import Any

from databases import database

import legato
from legato.worker.worker import TickResult


@legato.task(name="bench.item")
def item(x: int) -> int:
    return x


def fan_out(max_parallel: int | None = None) -> legato.Workflow:
    wf = legato.Workflow("map_bench")
    wf.map("each", item, over=wf.param("items"), x=legato.item, max_parallel=max_parallel)
    return wf


def work(url: str, run_id: str, concurrency: int, ready: Any, go: Any, ended: Any) -> None:
    """One worker process: get ready, wait for the go, work until the run has finished."""
    with legato.Client(url) as client:
        worker = legato.Worker(client, concurrency=concurrency, poll_interval=0.02)
        client.list_runs(limit=1)  # the connection is open before the clock starts
        ready.release()
        go.wait()

        def finished(tick: TickResult) -> bool:
            if run_id in tick.finished_runs:
                return True
            return tick.idle and client.get(run_id, with_steps=False).finished

        worker.run(until=finished)
        ended.put(time.perf_counter())
        worker.close()


def measure(
    kind: str, items: int, processes: int, concurrency: int, max_parallel: int | None = None
) -> tuple[float, float]:
    """Seconds from go to the run's end, and the milliseconds per item that makes."""
    context = multiprocessing.get_context("spawn")
    with database(kind) as url, legato.Client(url) as client:
        run_id = client.start(fan_out(max_parallel), {"items": list(range(items))})
        ready, go, ended = context.Semaphore(0), context.Event(), context.Queue()
        workers = [
            context.Process(target=work, args=(url, run_id, concurrency, ready, go, ended))
            for _ in range(processes)
        ]
        for process in workers:
            process.start()
        for _ in workers:
            ready.acquire()
        began = time.perf_counter()
        go.set()
        ends = [ended.get(timeout=600) for _ in workers]
        for process in workers:
            process.join()
        run = client.get(run_id, with_steps=False)
        assert run.status == "completed", run
        output = client.get(run_id).steps["each"].output
        assert output == list(range(items)), "the map's output is its items, in order"
    elapsed = max(ends) - began
    return elapsed, elapsed * 1000 / items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--items", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=4, help="task threads per worker")
    parser.add_argument(
        "--max-parallel",
        type=int,
        nargs="+",
        default=[0],
        help="the map's max_parallel (0: none); releasing each next item must not cost more "
        "as the map goes on",
    )
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(
        f"| database | items | max_parallel | worker processes | seconds (median of {args.runs}) "
        "| ms/item |"
    )
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        for items in args.items:
            for bound in args.max_parallel:
                for processes in args.processes:
                    samples = [
                        measure(kind, items, processes, args.concurrency, bound or None)
                        for _ in range(args.runs)
                    ]
                    seconds = statistics.median(s[0] for s in samples)
                    per_item = statistics.median(s[1] for s in samples)
                    print(
                        f"| {kind} | {items:,} | {bound or '-'} | {processes} | {seconds:.2f} "
                        f"| {per_item:.3f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
