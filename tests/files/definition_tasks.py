"""Tasks the definition-file tests and their bad files call, by explicit names."""

from __future__ import annotations

from typing import Any

import legato


@legato.task(name="files.echo")
def echo(x: Any = None) -> Any:
    return x


@legato.task(name="files.beating", heartbeat_timeout="1m")
def beating(ctx: legato.Context, x: Any = None) -> Any:
    ctx.heartbeat(x)
    return x


@legato.task(name="files.add")
def add(a: int, b: int = 1) -> int:
    return a + b


@legato.task(name="tasks/extract", tag="v1")
def extract_v1(source: str = "s3") -> dict[str, Any]:
    return {"source": source, "version": 1}
