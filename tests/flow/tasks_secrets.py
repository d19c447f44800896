"""Tasks the secrets tests run; names start with ``flow_secrets.``."""

from __future__ import annotations

import hashlib

import legato

#: keys whose first call has failed (``fails_once``)
failed_once: set[str] = set()


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@legato.task(name="flow_secrets.sign")
def sign(token: str, header: str = "", prefix: str = "") -> dict[str, str]:
    """Show what the call got without returning a secret: digests."""
    return {"token": digest(token), "header": digest(header), "prefix": digest(prefix)}


@legato.task(name="flow_secrets.fails_once")
def fails_once(key: str, token: str) -> str:
    if key not in failed_once:
        failed_once.add(key)
        raise ConnectionError(f"refused with {token}")
    return digest(token)


@legato.task(name="flow_secrets.plain")
def plain(x: int) -> int:
    return x * 2
