"""The task the comparison workloads call, imported by their ``legato worker`` processes."""

from __future__ import annotations

import legato


@legato.task(name="bench.noop")
def noop(*args: object) -> int:
    return 1
