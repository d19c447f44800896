"""The comparison workloads' task as ``async def``, for workers on the asyncio pool
(which serves async tasks only)."""

from __future__ import annotations

import legato


@legato.task(name="bench.anoop")
async def anoop(*args: object) -> int:
    return 1
