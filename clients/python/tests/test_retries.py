"""Retries on 429 and 503 against the server's real rate limits, daily quotas and provider outages."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from astrocyte_client import AsyncAstrocyte, Astrocyte, RateLimitedError, UnavailableError
from astrocyte_client._retry import RetryPolicy, parse_retry_after_header


def bank() -> str:
    return "r" + uuid.uuid4().hex[:12]


def drain_retain_bucket(base_url: str, b: str) -> RateLimitedError:
    """Retains into `b` without retrying until the server's 60-a-minute bucket is empty."""
    started = time.monotonic()
    with Astrocyte(base_url, max_retries=0) as brain:
        for i in range(200):
            try:
                brain.retain(f"Filler memory number {i} for the rate limit.", b)
            except RateLimitedError as error:
                # A burst of 60, plus the one token a second that refilled meanwhile.
                refilled = int(time.monotonic() - started) + 1
                assert 60 <= i <= 60 + refilled, f"the bucket of 60 emptied after {i} retains"
                return error
    raise AssertionError("no 429 after 200 retains with a limit of 60 a minute")


def test_429_carries_retry_after_and_is_raised_without_retries(limited_server):
    error = drain_retain_bucket(limited_server.base_url, bank())
    assert error.status == 429
    assert error.retry_after_seconds is not None and 0 < error.retry_after_seconds <= 1.01
    assert error.headers["retry-after"] == "1"
    assert "Rate limited" in error.detail


def test_sync_client_waits_out_a_429_and_succeeds(limited_server):
    b = bank()
    drain_retain_bucket(limited_server.base_url, b)
    retries = []
    with Astrocyte(limited_server.base_url, max_retries=3,
                   on_retry=lambda n, delay, error: retries.append((n, delay, error.status))) as brain:
        started = time.monotonic()
        stored = brain.retain("Stored after waiting for the bucket.", b)
        elapsed = time.monotonic() - started
    assert stored.stored
    assert retries and retries[0][0] == 1 and retries[0][2] == 429
    assert 0 < retries[0][1] <= 1.5
    assert elapsed >= retries[0][1] * 0.9


def test_async_client_waits_out_a_429_and_succeeds(limited_server):
    b = bank()
    drain_retain_bucket(limited_server.base_url, b)
    retries = []

    async def scenario():
        async with AsyncAstrocyte(limited_server.base_url, max_retries=3,
                                  on_retry=lambda n, d, e: retries.append(e.status)) as brain:
            return await brain.retain("Async store after waiting.", b)

    assert asyncio.run(scenario()).stored
    assert retries and set(retries) == {429}


def test_daily_quota_is_not_slept_through(limited_server):
    b = bank()
    retries = []
    with Astrocyte(limited_server.base_url, max_retries=5, principal="agent:q",
                   on_retry=lambda *a: retries.append(a)) as brain:
        brain.retain("Quota probe memory about lanterns.", b)
        brain.reflect("lanterns", b)
        brain.reflect("lanterns", b)
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as raised:
            brain.reflect("lanterns", b)
        assert time.monotonic() - started < 5
    assert retries == []
    assert "daily quota of 2" in raised.value.detail
    midnight = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    to_midnight = (midnight - datetime.now(timezone.utc)).total_seconds()
    assert abs(raised.value.retry_after_seconds - to_midnight) < 120


def test_503_retry_after_header_is_honoured_then_attempts_run_out(outage_server):
    server, stub = outage_server
    stub.up = False
    with Astrocyte(server.base_url, max_retries=0) as once:
        with pytest.raises(UnavailableError) as raised:
            once.retain("Nothing can be embedded now.", bank())
    assert raised.value.status == 503
    assert raised.value.retry_after_seconds == 5.0  # from the Retry-After header alone
    assert raised.value.detail == "Provider unavailable"

    retries = []
    with Astrocyte(server.base_url, max_retries=1, on_retry=lambda n, d, e: retries.append((n, d))) as twice:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            twice.retain("Still nothing can be embedded.", bank())
        elapsed = time.monotonic() - started
    assert [n for n, _ in retries] == [1]
    assert 5.0 <= retries[0][1] < 5.5
    assert elapsed >= 5.0


def test_503_then_recovery_succeeds_on_retry(outage_server):
    server, stub = outage_server
    stub.up = False

    def bring_up(n, delay, error):
        assert error.status == 503
        stub.up = True

    b = bank()
    with Astrocyte(server.base_url, max_retries=2, on_retry=bring_up) as brain:
        stored = brain.retain("Embedded once the provider came back.", b)
        assert stored.stored
        assert [h.text for h in brain.recall("provider came back", bank_id=b).hits] == [
            "Embedded once the provider came back."]
    stub.up = False


def test_policy_reads_retry_after_as_seconds_or_http_date_and_backs_off_without_one():
    assert parse_retry_after_header("7") == 7.0
    assert parse_retry_after_header(None) is None
    assert parse_retry_after_header("soon") is None
    in_a_minute = datetime.now(timezone.utc) + timedelta(seconds=60)
    date_value = parse_retry_after_header(in_a_minute.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert date_value is not None and 57 <= date_value <= 61

    policy = RetryPolicy(max_retries=3, backoff_base=0.5, backoff_max=2.0, max_retry_after=60)
    assert policy.delay(0, 400, {}, {}) is None
    assert policy.delay(3, 429, {}, {}) is None
    assert policy.delay(0, 429, {"retry_after_seconds": 120}, {}) is None
    assert 2.0 <= policy.delay(0, 503, None, {"retry-after": "2"}) <= 2.2
    steps = [policy.delay(n, 503, None, {}) for n in range(3)]
    assert 0.05 <= steps[0] <= 0.5 and 0.1 <= steps[1] <= 1.0 and 0.2 <= steps[2] <= 2.0
