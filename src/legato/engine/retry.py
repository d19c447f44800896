"""Retry decisions: whether a failed attempt is tried again, and after how long."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from legato.model.spec import RetryPolicy

__all__ = ["RetryDecision", "backoff_delay", "decide_retry", "exception_names", "is_retryable"]


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay: float = 0.0


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Jitter keeps the delay between 50% and 100% of the computed value, so many
    steps failing together (a database blip) do not all retry at once.
    """
    attempt = max(attempt, 1)
    if policy.backoff == "fixed":
        delay = policy.delay
    elif policy.backoff == "linear":
        delay = policy.delay * attempt
    else:
        delay = policy.delay * (2.0 ** min(attempt - 1, 62))
    delay = min(delay, policy.max_delay)
    if policy.jitter and delay > 0:
        delay *= 0.5 + 0.5 * (rng or random).random()
    return delay


def exception_names(exc: BaseException) -> list[str]:
    """Every name ``exc`` answers to: plain and qualified names along its MRO."""
    names = []
    for cls in type(exc).__mro__:
        names.append(cls.__qualname__)
        names.append(f"{cls.__module__}.{cls.__qualname__}")
    return names


def is_retryable(policy: RetryPolicy, error_names: Iterable[str]) -> bool:
    if not policy.retry_on:
        return True
    wanted = set(policy.retry_on)
    return any(name in wanted for name in error_names)


def decide_retry(
    policy: RetryPolicy,
    attempt: int,
    retryable: bool,
    rng: random.Random | None = None,
) -> RetryDecision:
    """After failed attempt ``attempt``: retry (with a delay) or give up."""
    if retryable and attempt < policy.max_attempts:
        return RetryDecision(True, backoff_delay(policy, attempt, rng))
    return RetryDecision(False)
