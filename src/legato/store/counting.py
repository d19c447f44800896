"""Statements, round trips and commits this process sends its database, counted exactly.

The stores count every statement they execute (an ``executemany`` counts
each of its rows), every round trip to the server (on PostgreSQL a statement
outside a pipeline is one, ``BEGIN`` and ``COMMIT`` one each, a pipeline one
per sync; on SQLite, where there is no server, each call into the library is
one) and every commit. Tests read :data:`COUNTS` to bound the statements a
step costs; a benchmark sets ``LEGATO_COUNTS_DIR`` so that each process keeps
its counts in a small file there (``<pid>.counts``, mapped into memory) that
the benchmark sums while the processes run.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COUNTS", "Counts", "Snapshot", "read_dir"]

_FIELDS = ("statements", "round_trips", "commits")
_SIZE = 8 * len(_FIELDS)


@dataclass(frozen=True)
class Snapshot:
    statements: int = 0
    round_trips: int = 0
    commits: int = 0

    def __sub__(self, other: Snapshot) -> Snapshot:
        return Snapshot(
            self.statements - other.statements,
            self.round_trips - other.round_trips,
            self.commits - other.commits,
        )

    def __add__(self, other: Snapshot) -> Snapshot:
        return Snapshot(
            self.statements + other.statements,
            self.round_trips + other.round_trips,
            self.commits + other.commits,
        )


class Counts:
    """Three counters in memory (a file's, when ``LEGATO_COUNTS_DIR`` is set).

    Increments from several threads are not atomic; the hot path runs them on
    one thread per transaction, which is what the counts are read for.
    """

    def __init__(self, directory: str | None = None) -> None:
        self._map: mmap.mmap | None = None
        if directory:
            path = Path(directory) / f"{os.getpid()}.counts"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, _SIZE)
                self._map = mmap.mmap(fd, _SIZE)
            finally:
                os.close(fd)
            self._cells = memoryview(self._map).cast("q")
        else:
            self._cells = memoryview(bytearray(_SIZE)).cast("q")

    def statement(self, n: int = 1, *, round_trips: int = 1) -> None:
        cells = self._cells
        cells[0] += n
        cells[1] += round_trips

    def round_trip(self, n: int = 1) -> None:
        self._cells[1] += n

    def commit(self, *, round_trip: bool = True) -> None:
        cells = self._cells
        cells[2] += 1
        if round_trip:
            cells[1] += 1

    def snapshot(self) -> Snapshot:
        return Snapshot(*(int(self._cells[i]) for i in range(len(_FIELDS))))


#: this process's counts
COUNTS = Counts(os.environ.get("LEGATO_COUNTS_DIR") or None)


def read_dir(directory: str | Path) -> Snapshot:
    """The sum of the counts every process has kept in ``directory`` so far."""
    total = Snapshot()
    for path in Path(directory).glob("*.counts"):
        data = path.read_bytes()
        if len(data) >= _SIZE:
            cells = memoryview(data).cast("q")
            total = total + Snapshot(*(int(cells[i]) for i in range(len(_FIELDS))))
    return total
