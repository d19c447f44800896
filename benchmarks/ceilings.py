"""The databases' own ceilings on this machine: how many single-row INSERT
transactions per second each commits, so that a workflow figure can be read as a
fraction of what the database itself allows.

- PostgreSQL: ``pgbench`` with a script of one ``INSERT`` per transaction, ``-T 10``,
  at 1 and 2 clients, on a fresh database created and dropped here.
- SQLite: Python's ``sqlite3`` on a file in WAL mode with ``synchronous=NORMAL``
  (as legato opens it), one ``INSERT`` per transaction, for as long.

Prints one JSON line per measurement, then a markdown table (median of ``--runs``).

    .venv/bin/python benchmarks/ceilings.py
    .venv/bin/python benchmarks/ceilings.py --runs 1 --seconds 5 --db sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

PG_ADMIN = os.environ.get("LEGATO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
INSERT = "INSERT INTO ceiling (v) VALUES (1);\n"
TABLE = "CREATE TABLE ceiling (id bigserial PRIMARY KEY, v int NOT NULL)"


def psql(url: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def postgres_tps(clients: int, seconds: int) -> tuple[float, str]:
    """Transactions per second that pgbench reaches, and the server's version."""
    name = f"legato_ceiling_{uuid.uuid4().hex[:8]}"
    base = PG_ADMIN.rpartition("/")[0]
    url = f"{base}/{name}"
    psql(PG_ADMIN, f'CREATE DATABASE "{name}"')
    try:
        psql(url, TABLE)
        version = psql(url, "SHOW server_version").split()[0]
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "insert.sql"
            script.write_text(INSERT)
            done = subprocess.run(
                ["pgbench", "-n", "-f", str(script), "-c", str(clients), "-j", str(clients),
                 "-T", str(seconds), url],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
        match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
        if match is None:
            raise RuntimeError(f"no tps in pgbench's output:\n{done.stdout}")
        return float(match.group(1)), version
    finally:
        psql(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_commits(seconds: int) -> float:
    """Single-row INSERT transactions per second on a WAL file, synchronous=NORMAL."""
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "ceiling.db", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE ceiling (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
            commits = 0
            start = time.perf_counter()
            deadline = start + seconds
            while True:
                for _ in range(100):
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("INSERT INTO ceiling (v) VALUES (1)")
                    db.execute("COMMIT")
                commits += 100
                now = time.perf_counter()
                if now >= deadline:
                    return commits / (now - start)
        finally:
            db.close()


def row(system: str, version: str, clients: int, runs: list[float]) -> dict[str, object]:
    median = statistics.median(runs)
    result: dict[str, object] = {
        "system": system,
        "version": version,
        "database": {"PostgreSQL": "postgres", "SQLite": "sqlite"}[system],
        "workload": "ceiling: single-row INSERT transactions",
        "clients": clients,
        "value": round(median, 1),
        "unit": "commits/s",
        "runs": [round(r, 1) for r in runs],
        "median": round(median, 1),
        "ms_per_commit": round(1000 * clients / median, 4),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="length of each measurement")
    parser.add_argument("--db", choices=("postgres", "sqlite", "both"), default="both")
    args = parser.parse_args()
    rows = []
    if args.db in ("postgres", "both"):
        for clients in (1, 2):
            measured = [postgres_tps(clients, args.seconds) for _ in range(args.runs)]
            version = measured[0][1]
            rows.append(row("PostgreSQL", version, clients, [tps for tps, _ in measured]))
    if args.db in ("sqlite", "both"):
        runs = [sqlite_commits(args.seconds) for _ in range(args.runs)]
        rows.append(row("SQLite", sqlite3.sqlite_version, 1, runs))
    print()
    print("| database | clients | commits/s | ms per commit (per client) |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['system']} {r['version']} | {r['clients']} | {float(r['median']):,.0f} "  # type: ignore[arg-type]
            f"| {r['ms_per_commit']} |"
        )


if __name__ == "__main__":
    main()
