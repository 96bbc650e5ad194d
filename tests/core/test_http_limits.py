"""Rate limits shared by the REST and live routes."""

from __future__ import annotations

import pytest

from camcount.http.limits import RateLimiter, TokenBucket


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() == 0.0


def test_rate_limiter_keeps_one_bucket_per_key_and_forgets_old_ones() -> None:
    limiter = RateLimiter(1, 1, max_keys=2, clock=lambda: 0.0)
    assert limiter.take("a") == 0 and limiter.take("a") > 0
    assert limiter.take("b") == 0
    limiter.take("c")  # evicts a
    assert limiter.take("a") == 0
