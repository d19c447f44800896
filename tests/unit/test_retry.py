"""Retry decisions: backoff shapes, the cap, jitter bounds, retry_on matching."""

from __future__ import annotations

import random

import pytest

from legato.define.tasks import TaskRegistry, exception_name, task
from legato.engine.retry import (
    RetryDecision,
    backoff_delay,
    decide_retry,
    exception_names,
    is_retryable,
)
from legato.model.spec import RetryPolicy


class FlakyError(ConnectionError):
    pass


class DeeperError(FlakyError):
    pass


def policy(**fields: object) -> RetryPolicy:
    return RetryPolicy(**{"jitter": False, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("fixed", [2.0, 2.0, 2.0, 2.0]),
        ("linear", [2.0, 4.0, 6.0, 8.0]),
        ("exponential", [2.0, 4.0, 8.0, 16.0]),
    ],
)
def test_backoff_shapes(backoff: str, expected: list[float]) -> None:
    p = policy(backoff=backoff, delay=2, max_delay=100)
    assert [backoff_delay(p, n) for n in (1, 2, 3, 4)] == expected


@pytest.mark.parametrize("backoff", ["fixed", "linear", "exponential"])
def test_backoff_is_capped_at_max_delay(backoff: str) -> None:
    p = policy(backoff=backoff, delay=30, max_delay=25)
    assert backoff_delay(p, 50) == 25.0
    assert max(backoff_delay(p, n) for n in range(1, 200)) == 25.0


def test_exponential_backoff_does_not_overflow_for_huge_attempt_numbers() -> None:
    p = policy(backoff="exponential", delay=1, max_delay=60)
    assert backoff_delay(p, 10_000) == 60.0


def test_attempt_numbers_below_one_count_as_the_first() -> None:
    p = policy(backoff="exponential", delay=3, max_delay=60)
    assert backoff_delay(p, 0) == backoff_delay(p, 1) == 3.0


def test_delays_accept_durations() -> None:
    p = policy(backoff="fixed", delay="1m30s", max_delay="1h")
    assert (p.delay, p.max_delay) == (90.0, 3600.0)
    assert backoff_delay(p, 1) == 90.0


def test_jitter_keeps_the_delay_between_half_and_all_of_it() -> None:
    p = RetryPolicy(backoff="exponential", delay=4, max_delay=1000, jitter=True)
    rng = random.Random(1234)
    for attempt in range(1, 8):
        full = 4.0 * 2 ** (attempt - 1)
        delays = [backoff_delay(p, attempt, rng) for _ in range(200)]
        assert all(full * 0.5 <= delay <= full for delay in delays)
        # ...and spreads over that range rather than sitting at one end of it
        assert min(delays) < full * 0.6 and max(delays) > full * 0.9


def test_jitter_uses_the_given_random_source() -> None:
    p = RetryPolicy(backoff="fixed", delay=10, jitter=True)
    expected = 10 * (0.5 + 0.5 * random.Random(7).random())
    assert backoff_delay(p, 1, random.Random(7)) == pytest.approx(expected)
    delays = {backoff_delay(p, 1, random.Random(seed)) for seed in range(20)}
    assert len(delays) > 1  # not a constant


def test_zero_delay_stays_zero_with_jitter() -> None:
    p = RetryPolicy(backoff="exponential", delay=0, jitter=True)
    assert backoff_delay(p, 5, random.Random(1)) == 0.0


def test_exception_names_cover_plain_and_qualified_names_along_the_mro() -> None:
    names = exception_names(DeeperError("x"))
    module = __name__
    for expected in (
        "DeeperError",
        f"{module}.DeeperError",
        "FlakyError",
        f"{module}.FlakyError",
        "ConnectionError",
        "builtins.ConnectionError",
        "OSError",
        "Exception",
        "BaseException",
    ):
        assert expected in names
    assert names.index("DeeperError") < names.index("FlakyError") < names.index("OSError")


def test_retry_on_empty_retries_everything() -> None:
    assert is_retryable(policy(), exception_names(KeyError("k")))


@pytest.mark.parametrize(
    ("retry_on", "exc", "expected"),
    [
        (("ConnectionError",), ConnectionError(), True),
        (("ConnectionError",), DeeperError(), True),  # a subclass matches its base
        (("FlakyError",), DeeperError(), True),
        ((f"{__name__}.FlakyError",), DeeperError(), True),
        (("builtins.ConnectionError",), FlakyError(), True),
        (("ConnectionError",), ValueError(), False),
        (("DeeperError",), FlakyError(), False),  # a base does not match its subclass
        (("other.module.FlakyError",), FlakyError(), False),
        (("ValueError", "KeyError"), KeyError(), True),
    ],
)
def test_retry_on_matching(retry_on: tuple[str, ...], exc: BaseException, expected: bool) -> None:
    assert is_retryable(policy(retry_on=retry_on), exception_names(exc)) is expected


def test_retry_on_from_task_decorator_matches_raised_exceptions() -> None:
    registry = TaskRegistry()

    @task(name="unit.retry_on", registry=registry, retries=2, retry_on=[FlakyError, "KeyError"])
    def flaky() -> None: ...

    assert flaky.retry.retry_on == (f"{__name__}.FlakyError", "KeyError")
    assert is_retryable(flaky.retry, exception_names(DeeperError()))
    assert is_retryable(flaky.retry, exception_names(KeyError()))
    assert not is_retryable(flaky.retry, exception_names(ConnectionError()))
    assert exception_name(ValueError) == "ValueError"
    assert exception_name(FlakyError) == f"{__name__}.FlakyError"


def test_decide_retry_until_the_last_attempt() -> None:
    p = policy(max_attempts=3, backoff="linear", delay=1)
    assert decide_retry(p, 1, True) == RetryDecision(True, 1.0)
    assert decide_retry(p, 2, True) == RetryDecision(True, 2.0)
    assert decide_retry(p, 3, True) == RetryDecision(False)
    assert decide_retry(p, 4, True) == RetryDecision(False)


def test_decide_retry_never_retries_what_is_not_retryable() -> None:
    p = policy(max_attempts=5)
    assert decide_retry(p, 1, False) == RetryDecision(False)


def test_decide_retry_with_a_single_attempt() -> None:
    assert decide_retry(RetryPolicy(), 1, True).retry is False


def test_decide_retry_applies_jitter() -> None:
    p = RetryPolicy(max_attempts=2, backoff="fixed", delay=8, jitter=True)
    decision = decide_retry(p, 1, True, random.Random(3))
    assert decision.retry
    assert 4.0 <= decision.delay < 8.0  # jittered: this seed draws less than the full 8 s
    assert decision.delay == backoff_delay(p, 1, random.Random(3))


@pytest.mark.parametrize(
    "fields",
    [{"max_attempts": 0}, {"max_attempts": 1001}, {"delay": -1}, {"backoff": "random"}],
)
def test_retry_policy_bounds(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**fields)  # type: ignore[arg-type]
