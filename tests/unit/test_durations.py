"""Durations as people write them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from legato.durations import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("1h 30m 15s", 5415.0),
        (" 5M ", 300.0),
        ("1m500ms", 60.5),
        ("10", 10.0),
        ("0.5", 0.5),
        ("0s", 0.0),
        (7, 7.0),
        (2.5, 2.5),
        (0, 0.0),
        (timedelta(minutes=2, milliseconds=5), 120.005),
    ],
)
def test_durations(value: Any, seconds: float) -> None:
    result = parse_duration(value)
    assert result == pytest.approx(seconds)
    assert isinstance(result, float)


def test_none_stays_none() -> None:
    assert parse_duration(None) is None


@pytest.mark.parametrize("value", ["", "5x", "m5", "5m3", "abc", "1h-30m", "5 minutes", "ms"])
def test_bad_text(value: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value, field="timeout")
    assert str(info.value) == (
        "timeout: expected a duration such as '30s', '5m', '1h30m' or a number of seconds, "
        f"got {value!r}"
    )


@pytest.mark.parametrize("value", [True, False, [1], {"s": 1}])
def test_bad_types(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value, field="lease")
    assert str(info.value) == f"lease: expected a duration such as '30s', got {value!r}"


@pytest.mark.parametrize("value", [-1, -0.5, "-5", timedelta(seconds=-1)])
def test_negative(value: Any) -> None:
    with pytest.raises(ValueError, match="duration: a duration cannot be negative"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value",
    [
        float("inf"),
        float("-inf"),
        float("nan"),
        "inf",
        "-inf",
        "Infinity",
        "nan",
        "NaN",
        "1e999",
        "9" * 400,
        10**400,
    ],
)
def test_not_finite(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value, field="max_retry_delay")
    assert str(info.value) == (
        f"max_retry_delay: a duration must be a finite number of seconds, got {value!r}"
    )


@pytest.mark.parametrize("value", [0, 0.0, "0", "0s", "0ms", " 0m ", timedelta(0)])
def test_zero_is_refused_where_it_would_mean_nothing(value: Any) -> None:
    assert parse_duration(value, field="timeout") == 0.0
    with pytest.raises(ValueError) as info:
        parse_duration(value, field="timeout", allow_zero=False)
    assert str(info.value) == f"timeout: a duration must be more than zero, got {value!r}"


def test_more_than_zero_passes_without_zero() -> None:
    assert parse_duration("1ms", allow_zero=False) == pytest.approx(0.001)
    assert parse_duration(None, allow_zero=False) is None
    with pytest.raises(ValueError, match="lease: a duration cannot be negative, got -1"):
        parse_duration(-1, field="lease", allow_zero=False)


def test_a_duration_longer_than_a_hundred_years_is_refused() -> None:
    assert parse_duration("5200w") is not None  # about 99.7 years
    for huge in (1e300, "5300w", 10**12):
        with pytest.raises(ValueError, match="at most 100 years"):
            parse_duration(huge, field="timeout")
