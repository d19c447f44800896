"""Celery with Redis (broker and result backend) on the five workloads.

Celery's canvas expresses W2 to W4 natively: W2 is ``chain`` of 100 signatures,
W3 is ``chain(first, chord(group of 200, last))``, W4 is 200 chains of 3. W1 is
2,000 ``apply_async`` calls sharing one producer. A chain of groups would run the
DAG layer by layer, but it puts every remaining layer into each message, so W5 is
built as Celery users build dependency graphs by hand: a task enqueues each
successor whose last predecessor it is, counting arrivals with ``INCR`` in Redis.

Every task adds one to a Redis counter when it runs; the driver polls that counter,
since Celery keeps no table of finished tasks to count.

    benchmarks/peers/.venv/bin/python benchmarks/peers/celery_bench.py --runs 3

Workers: one ``celery worker --pool prefork --concurrency 2`` (2 worker processes
under a supervisor process), default prefetch (4 per process). Results are not
stored (``ignore_result``) except for W3's chord header, whose results the chord
counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import celery
import harness
import redis
from celery import chain, chord
from celery.signals import worker_ready

REDIS = f"{harness.REDIS_URL}/{os.environ.get('PEERS_CELERY_DB', '11')}"
QUEUE = os.environ.get("PEERS_CELERY_QUEUE", "peers-bench")
#: prefix of this invocation's Redis keys (counters and joins)
KEYS = os.environ.get("PEERS_CELERY_KEYS", "peers-bench")
WORKERS = "1 celery worker, --pool prefork --concurrency 2 (2 processes), Redis broker+backend"

app = celery.Celery("peers_bench", broker=REDIS, backend=REDIS)
app.conf.update(
    task_default_queue=QUEUE,
    result_expires=600,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    worker_enable_remote_control=False,  # no pidbox: nothing here sends it commands
    broker_connection_retry_on_startup=True,
)
store = redis.Redis.from_url(REDIS)


@worker_ready.connect
def _announce(**_: object) -> None:
    harness.announce_ready()


@app.task(name="noop", ignore_result=True)
def noop() -> None:
    store.incr(f"{KEYS}:done")


@app.task(name="dag", ignore_result=True)
def dag(r: int, layer: int, i: int) -> None:
    successors = harness.dag_successors(layer, i)
    pipe = store.pipeline(transaction=False)
    pipe.incr(f"{KEYS}:done")
    for sl, si in successors:
        pipe.incr(f"{KEYS}:join:{r}:{sl}:{si}")
    arrivals = pipe.execute()[1:]
    for (sl, si), arrived in zip(successors, arrivals, strict=True):
        if arrived == harness.DAG_NEEDS:
            dag.delay(r, sl, si)


# -- driver -----------------------------------------------------------------------

EXPECTED = {
    "W1": harness.W1_JOBS,
    "W2": harness.W2_STEPS,
    "W3": harness.W3_WIDTH + 2,
    "W4": harness.W4_RUNS * harness.W4_STEPS,
    "W5": harness.W5_STEPS,
}


def submit(workload: str, run: int) -> object:
    """Send the workload's messages; returns the canvas's result handle, if any."""
    if workload == "W1":
        # one producer for the whole batch: faster here than group(...).apply_async()
        with app.producer_or_acquire() as producer:
            for _ in range(harness.W1_JOBS):
                noop.apply_async(producer=producer)
    elif workload == "W2":
        chain(noop.si() for _ in range(harness.W2_STEPS)).apply_async()
    elif workload == "W3":
        # a chord counts its header's results, so those keep theirs
        header = (noop.si().set(ignore_result=False) for _ in range(harness.W3_WIDTH))
        fan = chord(header, noop.si())
        return chain(noop.si(), fan).apply_async()
    elif workload == "W4":
        for _ in range(harness.W4_RUNS):
            chain(noop.si() for _ in range(harness.W4_STEPS)).apply_async()
    else:
        for i in range(harness.DAG_WIDTH):
            dag.delay(run, 0, i)
    return None


def release(result: object) -> None:
    """Forget a canvas's results (its handle and every parent's), which also
    unsubscribes the driver from their Redis channels."""
    while result is not None:
        result.forget()  # type: ignore[attr-defined]
        result = getattr(result, "parent", None)


def done(target: int) -> bool:
    return int(store.get(f"{KEYS}:done") or 0) >= target


def bench(workload: str, runs: int) -> None:
    here = Path(__file__).resolve().parent
    env = {
        "PYTHONPATH": str(here),
        "PEERS_CELERY_KEYS": KEYS,
        "PEERS_CELERY_QUEUE": QUEUE,
        "PYTHONWARNINGS": "ignore",  # the worker's warning about running as root
    }
    command = [
        sys.executable, "-m", "celery", "-A", "celery_bench", "worker",
        "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    timings = []
    try:
        with harness.workers([command], env=env):
            handles: list[object] = []
            for run in range(runs):
                store.delete(f"{KEYS}:done")
                timings.append(
                    harness.timed(
                        lambda run=run: handles.append(submit(workload, run)),
                        lambda: done(EXPECTED[workload]),
                        300,
                    )
                )
                # stop listening for the chord's results now, not at interpreter exit
                for handle in handles:
                    release(handle)
                handles.clear()
    finally:
        # counters, the queue, and kombu's records of the queue's bindings
        for pattern in (f"{KEYS}:*", QUEUE, f"_kombu.binding*.{QUEUE}"):
            for key in store.scan_iter(pattern):
                store.delete(key)
        for member, _ in store.zscan_iter("_kombu.binding_deadlines"):
            if QUEUE in member.decode():
                store.zrem("_kombu.binding_deadlines", member)
    harness.report(
        "Celery",
        celery.__version__,
        "redis",
        workload,
        [total for total, _ in timings],
        WORKERS,
        submit_seconds=[submitted for _, submitted in timings],
    )


def main() -> None:
    args: argparse.Namespace = harness.parse_args()
    for workload in args.workloads:
        bench(workload, args.runs)


if __name__ == "__main__":
    # Keys and queue of this invocation, inherited by its workers.
    os.environ["PEERS_CELERY_KEYS"] = KEYS = f"peers-bench-{uuid.uuid4().hex[:8]}"
    os.environ["PEERS_CELERY_QUEUE"] = QUEUE = KEYS
    app.conf.task_default_queue = QUEUE
    main()
