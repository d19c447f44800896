"""Claim latency as history grows: does claiming one step stay cheap beside 200,000 finished ones?

A worker's claim is ``Store.report_and_claim([], ClaimRequest(...))``. Its
statement must find the best queued steps through the partial claim index
(``step_runs_claim``, ``step_runs_claim_tree``), so its cost depends on the
steps it returns, not on how many steps the database holds: an earlier
``queue = ANY(...)`` form made PostgreSQL read and sort every queued step of the
queues served (about 23 ms at 50,000 queued steps).

The database is built in seconds: ``legato.Client`` creates the schema, one
run started through it provides the spec and well-formed template rows, and
SQL copies those into ``--finished`` completed and ``--queued`` queued steps
(runs of 100 steps over three queues, four tasks and three priorities; the
completed ones first, as history would be), then ``VACUUM ANALYZE`` on
PostgreSQL. With the database warm it times claims that take real queued
steps (they become running), one transaction each:

(a) 1 step for a worker serving one queue, (b) 1 step for a worker serving
three queues, (c) 10 steps for a worker serving three queues, (d) 1 step of one
run tree, as an embedded ``legato.run`` claims (``root_run_id``, every queue).

It reports, per database and case, the median and p95 of the whole claim
transaction (begin, claim, events, commit) and the median of the claim
statement alone (sent, executed, rows fetched; on PostgreSQL with the BEGIN
psycopg sends before it), each the median over ``--runs`` fresh databases.
``--explain`` prints the claim statement's plan for case (a) to stderr: on
PostgreSQL ``EXPLAIN (ANALYZE, BUFFERS)`` with the values bound and as a
generic plan, and how often PostgreSQL re-planned the prepared statement.

    .venv/bin/python benchmarks/claim_latency.py                  # both databases
    .venv/bin/python benchmarks/claim_latency.py --db postgres --explain
    .venv/bin/python benchmarks/claim_latency.py --db sqlite --queued 5000 --finished 20000
    LEGATO_BENCH_PG=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/claim_latency.py
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from databases import database

import legato
from legato.store.base import ClaimRequest, Store, new_run_id

STEPS_PER_RUN = 100
QUEUES = ("default", "reports", "ml")
PRIORITIES = (0, 5, 9)
LEASE = 30.0
WARMUP = 20
#: claims in one run tree before case (d) moves to the next (a tree has 100 steps)
TREE_CLAIMS = 50
CLAIM_QUERIES = ("claim_queue_steps", "claim_steps", "claim_tree_steps")


@legato.task(name="bench.extract")
def extract() -> int:
    return 1


@legato.task(name="bench.transform")
def transform() -> int:
    return 1


@legato.task(name="bench.load")
def load() -> int:
    return 1


@legato.task(name="bench.notify")
def notify() -> int:
    return 1


TASKS = (extract, transform, load, notify)
TASK_NAMES = tuple(t.name for t in TASKS)


def workflow() -> legato.Workflow:
    """Independent steps; step ``i``: task ``i % 4``, queue ``i % 3``, priority ``i // 3 % 3``."""
    wf = legato.Workflow("claim_bench")
    for i in range(STEPS_PER_RUN):
        wf.step(
            f"s{i:02d}",
            TASKS[i % len(TASKS)],
            queue=QUEUES[i % len(QUEUES)],
            priority=PRIORITIES[i // len(QUEUES) % len(PRIORITIES)],
        )
    return wf


@dataclass(frozen=True)
class Case:
    label: str
    #: claim number -> request; ``roots`` are the runs that still have queued steps
    request: Callable[[int, list[str]], ClaimRequest]
    steps: int


def _request(
    limit: int, queues: tuple[str, ...] | None = None, root: str | None = None
) -> ClaimRequest:
    return ClaimRequest(
        worker_id="bench-worker",
        queues=queues,
        tasks=TASK_NAMES,
        limit=limit,
        lease=LEASE,
        root_run_id=root,
    )


CASES = [
    Case("(a) 1 step, worker serving 1 queue", lambda i, roots: _request(1, QUEUES[:1]), 1),
    Case("(b) 1 step, worker serving 3 queues", lambda i, roots: _request(1, QUEUES), 1),
    Case("(c) 10 steps, worker serving 3 queues", lambda i, roots: _request(10, QUEUES), 10),
    # As legato.run works one tree: TREE_CLAIMS claims in each, newest tree first.
    Case(
        "(d) 1 step of one run tree (embedded)",
        lambda i, roots: _request(1, None, roots[-1 - i // TREE_CLAIMS % len(roots)]),
        1,
    ),
]


# -- building the database ------------------------------------------------------------

# Runs and steps copied from the template run. Run n (from 0) holds steps
# n * 100 to n * 100 + 99 of the history; the first `finished` of them are
# completed, the rest queued (oldest first, a millisecond apart, all due).

PG_RUNS = """
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, outputs,
                  variables, tags, root_run_id, created_at,
                  started_at, finished_at, updated_at)
SELECT r.id, t.workflow_name, t.workflow_version, t.spec_hash,
       CASE WHEN r.done = r.total THEN 'completed' ELSE 'running' END,
       t.params, CASE WHEN r.done = r.total THEN '{}'::json END, t.variables, t.tags,
       r.id, r.at, r.at,
       CASE WHEN r.done = r.total THEN r.at + interval '1 second' END, r.at
FROM (SELECT id, least(%(per_run)s, %(total)s - n * %(per_run)s) AS total,
             greatest(0, least(%(per_run)s, %(finished)s - n * %(per_run)s)) AS done,
             now() - interval '1 hour' + n * %(per_run)s * interval '1 ms' AS at
      FROM (SELECT id, ord - 1 AS n
            FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS o(id, ord)) AS u) AS r
CROSS JOIN (SELECT * FROM runs WHERE id = %(template)s::uuid) AS t
"""

PG_STEPS = """
INSERT INTO step_runs (run_id, root_run_id, key, step_id, task, position, status, deps_remaining,
                       attempt, max_attempts, retry, timeout, queue, priority, available_at,
                       inputs, output, history, worker_id, queued_at, started_at, finished_at,
                       failures, lost, max_lost)
SELECT s.run_id, s.run_id, s.step_id, s.step_id, s.task, s.position,
       CASE WHEN s.done THEN 'completed' ELSE 'queued' END, 0,
       CASE WHEN s.done THEN 1 ELSE 0 END, s.max_attempts, s.retry, s.timeout,
       s.queue, s.priority, s.at,
       CASE WHEN s.done THEN '{"args": [], "kwargs": {}}'::json END,
       CASE WHEN s.done THEN '1'::json END, '[]'::jsonb,
       CASE WHEN s.done THEN 'bench-history' END, s.at,
       CASE WHEN s.done THEN s.at + interval '1 ms' END,
       CASE WHEN s.done THEN s.at + interval '2 ms' END, 0, 0, s.max_lost
FROM (SELECT r.id AS run_id, t.*, r.n * %(per_run)s + t.p AS k,
             r.n * %(per_run)s + t.p < %(finished)s AS done,
             now() - interval '1 hour' + (r.n * %(per_run)s + t.p) * interval '1 ms' AS at
      FROM (SELECT id, ord - 1 AS n
            FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS o(id, ord)) AS r
      CROSS JOIN (SELECT step_id, task, position, max_attempts, retry, timeout, queue,
                         priority, max_lost, row_number() OVER (ORDER BY position) - 1 AS p
                  FROM step_runs WHERE run_id = %(template)s::uuid) AS t) AS s
WHERE s.k < %(total)s
ORDER BY s.k
"""

SQLITE_RUNS = """
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, outputs,
                  variables, tags, root_run_id, created_at,
                  started_at, finished_at, updated_at)
SELECT r.id, t.workflow_name, t.workflow_version, t.spec_hash,
       CASE WHEN r.done = r.total THEN 'completed' ELSE 'running' END,
       t.params, CASE WHEN r.done = r.total THEN '{}' END, t.variables, t.tags,
       r.id, r.at, r.at, CASE WHEN r.done = r.total THEN r.at + 1 END, r.at
FROM (SELECT value AS id, min(:per_run, :total - key * :per_run) AS total,
             max(0, min(:per_run, :finished - key * :per_run)) AS done,
             :now - 3600 + key * :per_run * 0.001 AS at
      FROM json_each(:ids)) AS r
CROSS JOIN (SELECT * FROM runs WHERE id = :template) AS t
"""

SQLITE_STEPS = """
INSERT INTO step_runs (run_id, root_run_id, key, step_id, task, position, status, deps_remaining,
                       attempt, max_attempts, retry, timeout, queue, priority, available_at,
                       inputs, output, history, worker_id, queued_at, started_at, finished_at,
                       failures, lost, max_lost)
SELECT s.run_id, s.run_id, s.step_id, s.step_id, s.task, s.position,
       CASE WHEN s.done THEN 'completed' ELSE 'queued' END, 0,
       CASE WHEN s.done THEN 1 ELSE 0 END, s.max_attempts, s.retry, s.timeout,
       s.queue, s.priority, s.at,
       CASE WHEN s.done THEN '{"args": [], "kwargs": {}}' END,
       CASE WHEN s.done THEN '1' END, '[]',
       CASE WHEN s.done THEN 'bench-history' END, s.at,
       CASE WHEN s.done THEN s.at + 0.001 END,
       CASE WHEN s.done THEN s.at + 0.002 END, 0, 0, s.max_lost
FROM (SELECT r.value AS run_id, t.*, r.key * :per_run + t.p AS k,
             r.key * :per_run + t.p < :finished AS done,
             :now - 3600 + (r.key * :per_run + t.p) * 0.001 AS at
      FROM json_each(:ids) AS r
      CROSS JOIN (SELECT step_id, task, position, max_attempts, retry, timeout, queue,
                         priority, max_lost, row_number() OVER (ORDER BY position) - 1 AS p
                  FROM step_runs WHERE run_id = :template) AS t) AS s
WHERE s.k < :total
ORDER BY s.k
"""


def build(kind: str, url: str, client: legato.Client, queued: int, finished: int) -> list[str]:
    """Fill the database with the history; return the runs that have queued steps, oldest first."""
    template = client.start(workflow())
    total = queued + finished
    ids = [new_run_id() for _ in range(math.ceil(total / STEPS_PER_RUN))]
    params: dict[str, Any] = {
        "template": template,
        "per_run": STEPS_PER_RUN,
        "total": total,
        "finished": finished,
    }
    cleanup = [
        "DELETE FROM events WHERE run_id = {t}",
        "DELETE FROM step_runs WHERE run_id = {t}",
        "DELETE FROM runs WHERE id = {t}",
    ]
    if kind == "postgres":
        import psycopg

        with psycopg.connect(url) as conn:  # one transaction, committed on leaving
            conn.execute(PG_RUNS, {**params, "ids": ids})
            conn.execute(PG_STEPS, {**params, "ids": ids})
            for statement in cleanup:
                conn.execute(statement.format(t="%(template)s::uuid"), params)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    else:
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            with lite:
                params |= {"ids": json.dumps(ids), "now": time.time()}
                lite.execute(SQLITE_RUNS, params)
                lite.execute(SQLITE_STEPS, params)
                for statement in cleanup:
                    lite.execute(statement.format(t=":template"), params)
        finally:
            lite.close()
    return ids[finished // STEPS_PER_RUN :]


def warm(kind: str, url: str) -> dict[str, int]:
    """Read every step row once; return the number of steps by status."""
    query = "SELECT status, count(*), sum(length(retry)) FROM step_runs GROUP BY status"
    if kind == "postgres":
        import psycopg

        with psycopg.connect(url) as conn:
            rows = conn.execute(query.replace("retry", "retry::text")).fetchall()
    else:
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = lite.execute(query).fetchall()
        finally:
            lite.close()
    return {status: count for status, count, _ in rows}


# -- plans ----------------------------------------------------------------------------


def claim_params(request: ClaimRequest) -> dict[str, Any]:
    """The claim statement's parameters, as ``Report._claim`` passes them."""
    return {
        "worker": request.worker_id,
        "queues": list(request.queues or ()),
        "tasks": list(request.tasks),
        "limit": request.limit,
        "lease": request.lease,
        "now": time.time(),
    }


def explain(kind: str, url: str, store: Store, request: ClaimRequest) -> None:
    """Print the plan of case (a)'s claim statement; nothing it claims is kept."""
    query: str = store._queries["claim_steps"]  # type: ignore[attr-defined]
    params = claim_params(request)
    if kind == "sqlite":
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            params["queues"], params["tasks"] = (
                json.dumps(params["queues"]),
                json.dumps(params["tasks"]),
            )
            rows = lite.execute("EXPLAIN QUERY PLAN " + query, params).fetchall()
        finally:
            lite.close()
        depth: dict[int, int] = {0: -1}
        print("\nSQLite EXPLAIN QUERY PLAN, claim_steps, case (a):", file=sys.stderr)
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            print("  " * (depth[node] + 1) + detail, file=sys.stderr)
        return
    import psycopg

    # The store writes the batch size into the statement as a literal, as here.
    query = query.replace("{limit}", str(int(params.pop("limit"))))
    with psycopg.connect(url) as conn:
        cur = psycopg.ClientCursor(conn)  # parameters inlined: the plan for these values
        plan = cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params).fetchall()
        conn.rollback()
        print("\nPostgreSQL EXPLAIN (ANALYZE, BUFFERS), claim_steps, case (a):", file=sys.stderr)
        print("\n".join(row[0] for row in plan), file=sys.stderr)
        # After five runs of a prepared statement PostgreSQL may switch to a
        # plan made without the values (psycopg prepares after five too): show it.
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", query)))
        numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", query)
        cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cur.execute("PREPARE bench_claim AS " + numbered)
        marks = ", ".join(["%s"] * len(names))
        plan = cur.execute(
            f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_claim({marks})", [params[n] for n in names]
        ).fetchall()
        conn.rollback()
        print("\nThe same, generic plan (plan_cache_mode = force_generic_plan):", file=sys.stderr)
        print("\n".join(row[0] for row in plan), file=sys.stderr)


def prepared_plans(store: Store) -> str:
    """How PostgreSQL planned the claim statements that the store's connection prepared."""
    with store._pool.connection() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'WITH picked AS%'"
        ).fetchall()
        conn.rollback()
    return "; ".join(
        f"{'claim_steps' if 'unnest(' in r['statement'] else 'claim_tree_steps'}: "
        f"{r['generic_plans']} generic + {r['custom_plans']} custom plans"
        for r in rows
    )


# -- timing ---------------------------------------------------------------------------


def time_statements(store: Store) -> list[float]:
    """From now on, append the ms each claim statement takes (sent, run, fetched) to a list."""
    samples: list[float] = []
    original = store._transaction  # type: ignore[attr-defined]

    @contextmanager
    def timed(*, write: bool = True) -> Iterator[Any]:
        with original(write=write) as tx:
            run_all = tx.all

            def timed_all(query: str, /, **params: Any) -> list[dict[str, Any]]:
                began = time.perf_counter()
                rows: list[dict[str, Any]] = run_all(query, **params)
                if query in CLAIM_QUERIES:
                    samples.append((time.perf_counter() - began) * 1000)
                return rows

            tx.all = timed_all
            yield tx

    store._transaction = timed  # type: ignore[attr-defined]
    return samples


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]


def measure(
    kind: str, queued: int, finished: int, claims: int, show_plan: bool
) -> dict[str, tuple[float, float, float]]:
    """One fresh database: ``{case: (median ms, p95 ms, statement median ms)}``."""
    figures = {}
    with database(kind) as url, legato.Client(url) as client:
        began = time.perf_counter()
        roots = build(kind, url, client, queued, finished)
        counts = warm(kind, url)
        print(
            f"{kind}: {counts} in {len(roots)} runs with queued steps, "
            f"built in {time.perf_counter() - began:.1f} s",
            file=sys.stderr,
        )
        store = client.store
        statements = time_statements(store)
        for case in CASES:
            totals = []
            statements.clear()
            for i in range(WARMUP + claims):
                request = case.request(i, roots)
                if show_plan and i == WARMUP and case is CASES[0]:
                    explain(kind, url, store, request)
                started = time.perf_counter()
                outcome = store.report_and_claim([], request)
                elapsed = (time.perf_counter() - started) * 1000
                if len(outcome.claimed) != case.steps:
                    raise SystemExit(f"{case.label}: claimed {len(outcome.claimed)} steps")
                totals.append(elapsed)
            figures[case.label] = (
                statistics.median(totals[WARMUP:]),
                p95(totals[WARMUP:]),
                statistics.median(statements[WARMUP:]),
            )
        if show_plan and kind == "postgres":
            print(f"\nclaim statements as prepared: {prepared_plans(store)}\n", file=sys.stderr)
    medians = ", ".join(f"{label[:3]} {f[0]:.3f}" for label, f in figures.items())
    print(f"{kind}: median ms {medians}", file=sys.stderr)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--queued", type=int, default=50_000, help="queued steps")
    parser.add_argument("--finished", type=int, default=200_000, help="completed steps")
    parser.add_argument("--claims", type=int, default=200, help="timed claims per case")
    parser.add_argument("--runs", type=int, default=3, help="fresh databases per database")
    parser.add_argument(
        "--explain", action="store_true", help="print the plan of case (a)'s claim statement"
    )
    args = parser.parse_args()
    needed = sum((WARMUP + args.claims) * case.steps for case in CASES)
    if args.queued < needed or args.finished < 0 or args.claims < 1 or args.runs < 1:
        parser.error(f"--claims {args.claims} needs --queued {needed} or more")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(
        f"| database | case | median ms | p95 ms | statement median ms |"
        f"  <- median of {args.runs} runs of {args.claims} claims",
        flush=True,
    )
    print("|---|---|---|---|---|")
    for kind in kinds:
        runs = [
            measure(kind, args.queued, args.finished, args.claims, args.explain and r == 0)
            for r in range(args.runs)
        ]
        for case in CASES:
            median, high, statement = (
                statistics.median(run[case.label][i] for run in runs) for i in range(3)
            )
            print(
                f"| {kind} | {case.label} | {median:.3f} | {high:.3f} | {statement:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
