"""The per-key rate limiter: every configured window, refusals not counted, Retry-After."""

from __future__ import annotations

import time

import pydantic
import pytest

from api.http.rate_limit import KeyRateLimiter, RateLimited
from infra.settings import Settings


def test_no_limit_configured_admits_everything() -> None:
    limiter = KeyRateLimiter("")
    for _ in range(10_000):
        limiter.admit("k1")


def test_the_tightest_full_window_says_how_long_to_wait() -> None:
    limiter = KeyRateLimiter("5/second;3/minute")
    for _ in range(3):
        limiter.admit("k1")
    with pytest.raises(RateLimited) as refused:
        limiter.admit("k1")
    assert refused.value.limit == "3 per 1 minute"
    assert 55 <= refused.value.retry_after <= 60


def test_keys_are_counted_apart_and_refusals_do_not_count() -> None:
    limiter = KeyRateLimiter("2/second;3/minute")
    limiter.admit("k1")
    limiter.admit("k1")
    for _ in range(5):  # refused by the second's window: not counted in the minute's
        with pytest.raises(RateLimited, match="2 per 1 second"):
            limiter.admit("k1")
    limiter.admit("k2")
    limiter.admit("k2")
    time.sleep(1.05)
    limiter.admit("k1")  # the third of the minute
    with pytest.raises(RateLimited, match="3 per 1 minute"):
        limiter.admit("k1")


def test_a_limit_that_cannot_be_read_is_a_configuration_error() -> None:
    with pytest.raises(pydantic.ValidationError, match="rate_limit"):
        Settings(rate_limit="lots per day")
    assert Settings(rate_limit="100/second; 2000/minute").rate_limit
