"""The one clock leases, retries and timeouts are judged by.

Stores read time through it, so tests move time forward instead of sleeping.
PostgreSQL uses the database's own ``now()`` shifted by :attr:`Clock.offset`
(so workers on machines with skewed clocks agree); SQLite lives on one
machine and uses that machine's clock plus the offset.
"""

from __future__ import annotations

import time

__all__ = ["Clock"]


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch, as the store sees them."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move this store's time forward (tests: expire leases without waiting)."""
        self.offset += seconds
