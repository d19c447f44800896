"""What a task wrote while an attempt ran, as readers get it back: one line each.

Lines come from the task's ``logging`` records (any logger) and its prints
(``stdout`` and ``stderr``), captured by the worker that ran the attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["STREAMS", "LogLine"]

#: the ``level`` of a line a task printed rather than logged
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class LogLine:
    """One line of a step attempt's log.

    ``level`` is the logging level's name (``INFO``, ``WARNING``...) or, for a
    print, the stream it went to (``stdout``, ``stderr``); ``logger`` is the
    logger's name (``None`` for a print). ``seq`` orders the lines of one
    attempt; ``id`` orders lines as they were stored and is the cursor of
    :meth:`legato.Client.logs` (``after=``).
    """

    id: int
    run_id: str
    step_id: str
    attempt: int
    seq: int
    at: datetime
    level: str
    logger: str | None
    message: str

    @property
    def printed(self) -> bool:
        """The task printed this line (rather than logging it)."""
        return self.level in STREAMS
