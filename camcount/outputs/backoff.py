"""How long an output waits before trying a receiver again.

Exponential backoff with jitter: many outputs that lost the same receiver
at the same moment would otherwise all come back at the same moments and
knock it over again. A receiver that says when to come back
(``Retry-After`` on a 429 or 503) is believed, up to the longest wait the
operator allowed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class Backoff:
    """Waits of ``base_s * 2**attempt`` capped at ``max_s``, each drawn
    between half and all of that ("equal jitter"): never shorter than half
    the schedule, so a receiver in trouble is not hammered, and spread
    enough that senders drift apart."""

    base_s: float
    max_s: float

    def __post_init__(self) -> None:
        if not self.base_s > 0:
            raise ValueError(f"backoff base must be above 0 s, got {self.base_s}")
        if self.max_s < self.base_s:
            raise ValueError(f"backoff max {self.max_s} s is below its base {self.base_s} s")

    def delay_s(
        self, attempt: int, rng: random.Random, retry_after_s: float | None = None
    ) -> float:
        """The wait after failed try number ``attempt`` (0 for the first)."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** max(0, attempt))
        drawn = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if retry_after_s is not None:
            return max(drawn, min(retry_after_s, self.max_s))
        return drawn


def parse_retry_after(value: str | None, now_unix: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an
    HTTP date (RFC 9110); None when absent or unreadable (the schedule
    applies then)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.fromtimestamp(now_unix, UTC)).total_seconds())
