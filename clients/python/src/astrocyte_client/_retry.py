"""The retry policy: which answers are retried, and how long to wait before the next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

RETRYABLE_STATUSES = frozenset({429, 503})


def parse_retry_after_header(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds: a number of seconds, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 429 and 503 answers.

    ``max_retries``: retries after the first attempt (0 disables retrying).
    ``backoff_base``/``backoff_max``: the exponential backoff (``base * 2**n``, jittered, capped)
    used when the server says nothing about when to come back.
    ``max_retry_after``: the longest server-requested wait the client sleeps through; a longer one
    (a daily quota, say) is raised at once as :class:`RateLimitedError` / :class:`UnavailableError`.
    """

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, status: int, body: Any, headers: Mapping[str, str]) -> Optional[float]:
        """Seconds to sleep before retry number ``attempt + 1``, or None to give up now."""
        if status not in RETRYABLE_STATUSES or attempt >= self.max_retries:
            return None
        requested = None
        if isinstance(body, dict):
            value = body.get("retry_after_seconds")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                requested = max(0.0, float(value))
        if requested is None:
            requested = parse_retry_after_header(headers.get("retry-after"))
        backoff = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        if requested is None:
            # Full jitter on the exponential step, never below a tenth of it.
            return random.uniform(backoff / 10, backoff)
        if requested > self.max_retry_after:
            return None
        # The server's hint, plus a little jitter so that many clients do not return at once.
        return requested + random.uniform(0, min(backoff, 1.0) / 4)
