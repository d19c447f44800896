"""Search latency with 1,000,000 runs stored: does a filtered search return its first page fast?

The database is built in SQL: ``legato.Client`` creates the schema and one
run started through it provides the spec, then ``--runs`` runs are inserted
in one statement, spread over 90 days, oldest first, with the indexes and
triggers set aside during the load and rebuilt after it (as a bulk load
does), then ``ANALYZE``. The runs are:

* 20 workflows (``wf_00`` ... ``wf_19``), versions 1 and 2;
* statuses: 90% completed, 6% failed, 2% cancelled, 1.5% running, 0.5% pending;
* tags ``env`` (prod 60%, staging 30%, dev 10%), ``team`` (10 teams) and
  ``customer`` (10,000 customers, about 100 runs each);
* params ``{"order_id": "ord-0000042", "source": "s3://...", "rows": ...}``,
  outputs on completed runs, and on failed runs one of three errors
  (a timeout, a refused connection, a bad row);
* no step rows (a search reads none; a page counts its runs' steps through
  the step index).

Each case is ``Client.search(...)`` asking for the first page of 50 runs,
timed from the call to the page in hand (statement, rows, step counts and
``Run`` objects), ``--repeat`` times after a warm-up; the figure is the median.
``--explain`` prints each case's plan (``EXPLAIN ANALYZE`` on PostgreSQL,
``EXPLAIN QUERY PLAN`` on SQLite) to stderr, and the script fails if a plan
reads a table from end to end.

    .venv/bin/python benchmarks/search.py                       # both databases
    .venv/bin/python benchmarks/search.py --db sqlite --runs 100000 --explain
    LEGATO_BENCH_PG=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/search.py --db postgres
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from databases import database

import legato
from legato.model.search import RunFilter
from legato.query import parse_query
from legato.store.search import plan_search

DAYS = 90
PAGE = 50
WARMUP = 3

# Field values are drawn from h, a multiplicative hash of the run's number n,
# so that status, tags and workflow do not move together.

PG_FILL = """
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, outputs,
                  variables, error, tags, created_by, correlation_id, root_run_id,
                  task_defaults, logical_date, created_at, started_at, finished_at, updated_at)
SELECT md5(n::text)::uuid, 'wf_' || lpad((n % 20)::text, 2, '0'),
       CASE WHEN h % 3 = 0 THEN '2' ELSE '1' END, %(spec_hash)s, status,
       json_build_object('order_id', 'ord-' || lpad(n::text, 7, '0'),
                         'source', 's3://bucket/wf_' || lpad((n % 20)::text, 2, '0') || '/'
                                   || to_char(at, 'YYYY-MM-DD') || '.csv',
                         'rows', h % 10000),
       CASE WHEN status = 'completed'
            THEN json_build_object('rows', h % 10000, 'table', 'warehouse.t' || (n % 20)) END,
       '{}'::json,
       CASE WHEN status = 'failed' THEN
            CASE h / 13 % 3
                WHEN 0 THEN json_build_object('type', 'TimeoutError',
                                              'message', 'read timed out after 30s')
                WHEN 1 THEN json_build_object('type', 'ConnectionError',
                                              'message', 'connection refused by db-' || (h % 7))
                ELSE json_build_object('type', 'ValueError', 'message', 'bad row ' || (h % 1000))
            END
            WHEN status = 'cancelled' THEN
                json_build_object('type', 'Cancelled', 'message', 'cancelled by request')
       END,
       jsonb_build_object(
           'env', CASE WHEN h / 1000 % 10 < 6 THEN 'prod'
                       WHEN h / 1000 % 10 < 9 THEN 'staging' ELSE 'dev' END,
           'team', 't' || (h / 10000 % 10),
           'customer', 'c-' || lpad((h / 100000 % 10000)::text, 4, '0')),
       (ARRAY['scheduler', 'api', 'alice', 'bob', 'etl-bot'])[(1 + h / 7 % 5)::int],
       CASE WHEN n % 10 = 0 THEN 'batch-' || (n / 10) END,
       md5(n::text)::uuid, '{}'::json, at, at, at,
       CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN at + interval '1 minute' END,
       at
FROM (SELECT n, h,
             CASE WHEN h % 1000 < 900 THEN 'completed' WHEN h % 1000 < 960 THEN 'failed'
                  WHEN h % 1000 < 980 THEN 'cancelled' WHEN h % 1000 < 995 THEN 'running'
                  ELSE 'pending' END AS status,
             now() - make_interval(secs => (%(total)s - n) * %(spacing)s) AS at
      FROM (SELECT n, (n * 2654435761) % 4294967296 AS h
            FROM generate_series(1, %(total)s::bigint) AS n) AS numbered) AS r
"""

SQLITE_FILL = """
WITH RECURSIVE numbers (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < :total),
hashed AS (SELECT n, (n * 2654435761) % 4294967296 AS h FROM numbers),
r AS (SELECT n, h,
             CASE WHEN h % 1000 < 900 THEN 'completed' WHEN h % 1000 < 960 THEN 'failed'
                  WHEN h % 1000 < 980 THEN 'cancelled' WHEN h % 1000 < 995 THEN 'running'
                  ELSE 'pending' END AS status,
             :now - (:total - n) * :spacing AS at
      FROM hashed)
INSERT INTO runs (id, workflow_name, workflow_version, spec_hash, status, params, outputs,
                  variables, error, tags, created_by, correlation_id, root_run_id,
                  task_defaults, logical_date, created_at, started_at, finished_at, updated_at,
                  seq)
SELECT printf('%08x-0000-7000-8000-%012x', n / 65536, n) AS id,
       printf('wf_%02d', n % 20), CASE WHEN h % 3 = 0 THEN '2' ELSE '1' END, :spec_hash, status,
       json_object('order_id', printf('ord-%07d', n),
                   'source', printf('s3://bucket/wf_%02d/%s.csv', n % 20,
                                    date(at, 'unixepoch')),
                   'rows', h % 10000),
       CASE WHEN status = 'completed'
            THEN json_object('rows', h % 10000, 'table', 'warehouse.t' || (n % 20)) END,
       '{}',
       CASE WHEN status = 'failed' THEN
            CASE h / 13 % 3
                WHEN 0 THEN json_object('type', 'TimeoutError',
                                        'message', 'read timed out after 30s')
                WHEN 1 THEN json_object('type', 'ConnectionError',
                                        'message', 'connection refused by db-' || (h % 7))
                ELSE json_object('type', 'ValueError', 'message', 'bad row ' || (h % 1000))
            END
            WHEN status = 'cancelled' THEN
                json_object('type', 'Cancelled', 'message', 'cancelled by request')
       END,
       json_object(
           'env', CASE WHEN h / 1000 % 10 < 6 THEN 'prod'
                       WHEN h / 1000 % 10 < 9 THEN 'staging' ELSE 'dev' END,
           'team', 't' || (h / 10000 % 10),
           'customer', printf('c-%04d', h / 100000 % 10000)),
       CASE h / 7 % 5 WHEN 0 THEN 'scheduler' WHEN 1 THEN 'api' WHEN 2 THEN 'alice'
                      WHEN 3 THEN 'bob' ELSE 'etl-bot' END,
       CASE WHEN n % 10 = 0 THEN 'batch-' || (n / 10) END,
       printf('%08x-0000-7000-8000-%012x', n / 65536, n), '{}', at, at, at,
       CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN at + 60 END, at, n
FROM r
"""


def cases(now: datetime) -> dict[str, dict[str, Any]]:
    """Label -> the search arguments of one case."""
    day = now - timedelta(days=30)
    return {
        "status + workflow": {"status": "failed", "workflow": "wf_07"},
        "two statuses + workflow": {"status": ["failed", "cancelled"], "workflow": "wf_07"},
        "tag (common)": {"tags": {"env": "prod"}},
        "two tags": {"tags": {"env": "prod", "team": "t3"}},
        "tag (rare: ~100 runs)": {"tags": {"customer": "c-0042"}},
        "text in errors": {"text": "refused"},
        "text in params (one run)": {"text": "ord-0123456"},
        "time range (one day)": {"started_after": day, "started_before": day + timedelta(days=1)},
        "time range + status": {
            "status": "failed",
            "started_after": day,
            "started_before": day + timedelta(days=1),
        },
        "correlation id": {"correlation_id": "batch-4242"},
        "query string": parse_query(
            'status:failed workflow:wf_07 tag:env=prod since:60d "timed out"', now=now
        ),
    }


# -- building the database --------------------------------------------------------------------


def build(kind: str, url: str, client: legato.Client, total: int) -> None:
    wf = legato.Workflow("search_bench")

    @legato.task(name="bench.search_noop")
    def noop() -> int:
        return 1

    wf.step("s", noop)
    template = client.start(wf)
    spec_hash = client.get(template, with_steps=False).workflow_hash
    spacing = DAYS * 86400 / total
    if kind == "postgres":
        _build_postgres(url, template, spec_hash, total, spacing)
    else:
        _build_sqlite(url, template, spec_hash, total, spacing)


def _build_postgres(url: str, template: str, spec_hash: str, total: int, spacing: float) -> None:
    import psycopg

    with psycopg.connect(url) as conn:  # one transaction, committed on leaving
        for table in ("events", "step_runs", "scope_counters"):
            conn.execute(f"DELETE FROM {table} WHERE run_id = %s", (template,))
        conn.execute("DELETE FROM runs WHERE id = %s", (template,))
        # Set the indexes and triggers aside, load, then rebuild them.
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes AS i"
            " WHERE i.tablename IN ('runs', 'run_tags') AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute("ALTER TABLE runs DISABLE TRIGGER USER")
        conn.execute(
            re.sub(r"%(?!\()", "%%", PG_FILL).encode(),
            {"spec_hash": spec_hash, "total": total, "spacing": spacing},
        )
        conn.execute(
            "INSERT INTO run_tags (run_id, key, value, created_at)"
            " SELECT r.id, t.key, t.value, r.created_at FROM runs AS r,"
            " jsonb_each_text(r.tags) AS t"
        )
        conn.execute("ALTER TABLE runs ENABLE TRIGGER USER")
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _, statement in indexes:
            conn.execute(statement.encode())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _build_sqlite(url: str, template: str, spec_hash: str, total: int, spacing: float) -> None:
    lite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        lite.execute("BEGIN")
        for table in ("events", "step_runs", "scope_counters"):
            lite.execute(f"DELETE FROM {table} WHERE run_id = ?", (template,))
        lite.execute("DELETE FROM runs WHERE id = ?", (template,))
        # Set the indexes and triggers aside, load, then rebuild them.
        aside = lite.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ('runs', 'run_tags')"
            " AND type IN ('index', 'trigger') AND sql IS NOT NULL"
        ).fetchall()
        for kind, name, _ in aside:
            lite.execute(f'DROP {kind.upper()} "{name}"')
        lite.execute(
            SQLITE_FILL,
            {"spec_hash": spec_hash, "total": total, "spacing": spacing, "now": time.time()},
        )
        lite.execute(
            "INSERT INTO run_tags (run_id, key, value, created_at)"
            " SELECT r.id, t.key, t.value, r.created_at FROM runs AS r, json_each(r.tags) AS t"
        )
        for _, _, statement in aside:
            lite.execute(statement)
        lite.execute("INSERT INTO run_text (run_text) VALUES ('rebuild')")
        lite.execute("COMMIT")
        lite.execute("ANALYZE")
    finally:
        lite.close()


# -- plans ------------------------------------------------------------------------------------


def explain(kind: str, client: legato.Client, label: str, args: dict[str, Any]) -> str:
    """The plan of the case's statement (PostgreSQL: run, with its timings)."""
    where = RunFilter.of(**args)
    store: Any = client.store
    with store._transaction(write=False) as tx:
        text, params = plan_search(kind, tx, where, order="newest", limit=PAGE + 1)
        if kind == "sqlite":
            rows = tx.select("EXPLAIN QUERY PLAN " + text, **params)
            lines = [row["detail"] for row in rows]
            # A virtual table is FTS5 answering MATCH through its index, or a run's tags
            # read from its JSON; every other table must be read through an index.
            whole = [
                line
                for line in lines
                if line.startswith("SCAN ") and " USING " not in line and "VIRTUAL" not in line
            ]
        else:
            rows = tx.select("EXPLAIN ANALYZE " + text, **params)
            lines = [row["QUERY PLAN"] for row in rows]
            whole = [line for line in lines if "Seq Scan" in line]
    plan = "\n".join("  " + line for line in lines)
    if whole:
        raise SystemExit(f"{kind} {label}: the plan reads a table whole:\n{plan}")
    return f"{kind} {label}:\n{plan}"


# -- timing -----------------------------------------------------------------------------------


def measure(kind: str, total: int, repeat: int, show_plans: bool) -> dict[str, tuple[float, int]]:
    """One database of ``total`` runs: ``{case: (median ms, runs on the page)}``."""
    figures = {}
    with database(kind) as url, legato.Client(url) as client:
        began = time.perf_counter()
        build(kind, url, client, total)
        print(
            f"{kind}: {total:,} runs built in {time.perf_counter() - began:.0f} s", file=sys.stderr
        )
        for label, args in cases(datetime.now(UTC)).items():
            if show_plans:
                print(explain(kind, client, label, args), file=sys.stderr)
            samples = []
            for i in range(WARMUP + repeat):
                started = time.perf_counter()
                page = client.search(**args, limit=PAGE)
                if i >= WARMUP:
                    samples.append((time.perf_counter() - started) * 1000)
            figures[label] = (statistics.median(samples), len(page.runs))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs stored")
    parser.add_argument("--repeat", type=int, default=15, help="timed searches per case")
    parser.add_argument("--explain", action="store_true", help="print each case's plan")
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(f"| database | search | first page ms (median of {args.repeat}) | runs on page |")
    print("|---|---|---|---|")
    for kind in kinds:
        for label, (ms, found) in measure(kind, args.runs, args.repeat, args.explain).items():
            print(f"| {kind} | {label} | {ms:.2f} | {found} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
