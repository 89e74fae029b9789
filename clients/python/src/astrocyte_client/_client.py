"""The sync (:class:`Astrocyte`) and async (:class:`AsyncAstrocyte`) clients."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import httpx

from . import _models as m
from . import _requests as r
from ._errors import APIError, AstrocyteConnectionError, error_for
from ._requests import When
from ._retry import RetryPolicy

__all__ = ["Astrocyte", "AsyncAstrocyte", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
PRINCIPAL_HEADER = "X-Astrocyte-Principal"

log = logging.getLogger("astrocyte_client")

#: Called before each retry with (retry number from 1, seconds to wait, the error answered).
RetryHook = Callable[[int, float, APIError], None]


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


class _Base:
    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: Optional[str] = None,
        bearer_token: Optional[str] = None,
        principal: Optional[str] = None,
        admin_token: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 60.0,
        on_retry: Optional[RetryHook] = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base,
                                 backoff_max=backoff_max, max_retry_after=max_retry_after)
        self._on_retry = on_retry
        self._timeout = httpx.Timeout(timeout)
        sent: Dict[str, str] = {"Accept": "application/json", "User-Agent": "astrocyte-client-python/0.1.0"}
        if api_key:
            sent["X-Api-Key"] = api_key
        if bearer_token:
            sent["Authorization"] = f"Bearer {bearer_token}"
        if principal:
            sent[PRINCIPAL_HEADER] = principal
        if admin_token:
            sent["X-Admin-Token"] = admin_token
        sent.update(headers or {})
        self._headers = sent

    def _result(self, call: r.Call, response: httpx.Response, attempt: int) -> Tuple[bool, Any]:
        """(True, parsed result) on success, (False, seconds to wait) to retry; raises otherwise."""
        body = _decode(response)
        if response.is_success:
            return True, call.parse(body if body is not None else {})
        headers = {k.lower(): v for k, v in response.headers.items()}
        error = error_for(response.status_code, body, headers)
        delay = self.retry.delay(attempt, response.status_code, body, headers)
        if delay is None:
            raise error
        log.info("astrocyte %s %s answered %s; retry %d in %.2fs", call.method, call.path,
                 response.status_code, attempt + 1, delay)
        if self._on_retry is not None:
            self._on_retry(attempt + 1, delay, error)
        return False, delay


class Astrocyte(_Base):
    """Synchronous client of an Astrocyte server's REST API.

    ``Astrocyte("http://127.0.0.1:8080", api_key="ak_…")``; ``bearer_token=`` sends the key (or a
    JWT) as ``Authorization: Bearer``; ``principal=`` sets ``X-Astrocyte-Principal`` (dev mode);
    ``admin_token=`` sets ``X-Admin-Token`` for admin routes (``banks()``) on a server that has one.
    429 and 503 answers are retried up to ``max_retries`` times, waiting what the server asks
    (``retry_after_seconds`` / ``Retry-After``) or an exponential backoff.
    """

    def __init__(self, base_url: str = DEFAULT_BASE_URL, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Astrocyte":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _send(self, call: r.Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, json=call.body)
            except httpx.TransportError as error:
                raise AstrocyteConnectionError(f"{call.method} {call.path}: {error}") from error
            done, value = self._result(call, response, attempt)
            if done:
                return value
            time.sleep(value)
            attempt += 1

    def retain(self, content: str, bank_id: str, *, metadata: Optional[Dict[str, Any]] = None,
               tags: Optional[Sequence[str]] = None, occurred_at: Optional[When] = None,
               content_type: Optional[str] = None, idempotency_key: Optional[str] = None,
               run_async: bool = False, thread_id: Optional[str] = None) -> m.RetainResult:
        """Store ``content`` in ``bank_id``; ``run_async=True`` queues it and returns a job id;
        ``thread_id`` joins it to a conversation whose turns lend each other keyword context."""
        return self._send(r.retain(content, bank_id, metadata=metadata, tags=tags, occurred_at=occurred_at,
                                   content_type=content_type, idempotency_key=idempotency_key,
                                   run_async=run_async, thread_id=thread_id))

    def recall(self, query: str, bank_id: Optional[str] = None, *, banks: Optional[Sequence[str]] = None,
               max_results: Optional[int] = None, max_tokens: Optional[int] = None,
               tags: Optional[Sequence[str]] = None, time_range: Optional[Tuple[When, When]] = None,
               as_of: Optional[When] = None) -> m.RecallResult:
        """Memories relevant to ``query`` from ``bank_id`` (or several ``banks``)."""
        return self._send(r.recall(query, bank_id, banks=banks, max_results=max_results, max_tokens=max_tokens,
                                   tags=tags, time_range=time_range, as_of=as_of))

    def reflect(self, query: str, bank_id: str, *, max_tokens: Optional[int] = None,
                include_sources: bool = True) -> m.ReflectResult:
        """An answer to ``query`` built from the bank's memories."""
        return self._send(r.reflect(query, bank_id, max_tokens=max_tokens, include_sources=include_sources))

    def forget(self, bank_id: str, *, memory_ids: Optional[Sequence[str]] = None,
               tags: Optional[Sequence[str]] = None, before_date: Optional[When] = None,
               scope: Optional[str] = None) -> m.ForgetResult:
        """Remove memories by id, tag, date, or all of them (``scope="all"``)."""
        return self._send(r.forget(bank_id, memory_ids=memory_ids, tags=tags, before_date=before_date,
                                   scope=scope))

    def history(self, query: str, bank_id: str, as_of: When, *, max_results: Optional[int] = None,
                max_tokens: Optional[int] = None, tags: Optional[Sequence[str]] = None) -> m.HistoryResult:
        """What the bank knew about ``query`` at ``as_of``."""
        return self._send(r.history(query, bank_id, as_of, max_results=max_results, max_tokens=max_tokens,
                                    tags=tags))

    def banks(self) -> List[str]:
        """The banks of the caller's tenant."""
        return self._send(r.banks())

    def health(self) -> m.HealthStatus:
        """The server's health (its store reachable or not)."""
        return self._send(r.health())

    def job(self, job_id: str) -> m.Job:
        """A background job, by id."""
        return self._send(r.job(job_id))

    def wait_for_job(self, job_id: str, *, timeout: float = 30.0, interval: float = 0.1) -> m.Job:
        """Poll :meth:`job` until it is ``done`` or ``dead``; ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.job(job_id)
            if found.finished:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {found.state} after {timeout}s")
            time.sleep(interval)


class AsyncAstrocyte(_Base):
    """Asynchronous client; the same methods as :class:`Astrocyte`, as coroutines.

    ``async with AsyncAstrocyte(url) as brain: await brain.retain(...)``.
    """

    def __init__(self, base_url: str = DEFAULT_BASE_URL, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncAstrocyte":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _send(self, call: r.Call) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, json=call.body)
            except httpx.TransportError as error:
                raise AstrocyteConnectionError(f"{call.method} {call.path}: {error}") from error
            done, value = self._result(call, response, attempt)
            if done:
                return value
            await asyncio.sleep(value)
            attempt += 1

    async def retain(self, content: str, bank_id: str, *, metadata: Optional[Dict[str, Any]] = None,
                     tags: Optional[Sequence[str]] = None, occurred_at: Optional[When] = None,
                     content_type: Optional[str] = None, idempotency_key: Optional[str] = None,
                     run_async: bool = False, thread_id: Optional[str] = None) -> m.RetainResult:
        """Store ``content`` in ``bank_id``; ``run_async=True`` queues it and returns a job id;
        ``thread_id`` joins it to a conversation whose turns lend each other keyword context."""
        return await self._send(r.retain(content, bank_id, metadata=metadata, tags=tags, occurred_at=occurred_at,
                                         content_type=content_type, idempotency_key=idempotency_key,
                                         run_async=run_async, thread_id=thread_id))

    async def recall(self, query: str, bank_id: Optional[str] = None, *, banks: Optional[Sequence[str]] = None,
                     max_results: Optional[int] = None, max_tokens: Optional[int] = None,
                     tags: Optional[Sequence[str]] = None, time_range: Optional[Tuple[When, When]] = None,
                     as_of: Optional[When] = None) -> m.RecallResult:
        """Memories relevant to ``query`` from ``bank_id`` (or several ``banks``)."""
        return await self._send(r.recall(query, bank_id, banks=banks, max_results=max_results,
                                         max_tokens=max_tokens, tags=tags, time_range=time_range, as_of=as_of))

    async def reflect(self, query: str, bank_id: str, *, max_tokens: Optional[int] = None,
                      include_sources: bool = True) -> m.ReflectResult:
        """An answer to ``query`` built from the bank's memories."""
        return await self._send(r.reflect(query, bank_id, max_tokens=max_tokens, include_sources=include_sources))

    async def forget(self, bank_id: str, *, memory_ids: Optional[Sequence[str]] = None,
                     tags: Optional[Sequence[str]] = None, before_date: Optional[When] = None,
                     scope: Optional[str] = None) -> m.ForgetResult:
        """Remove memories by id, tag, date, or all of them (``scope="all"``)."""
        return await self._send(r.forget(bank_id, memory_ids=memory_ids, tags=tags, before_date=before_date,
                                         scope=scope))

    async def history(self, query: str, bank_id: str, as_of: When, *, max_results: Optional[int] = None,
                      max_tokens: Optional[int] = None, tags: Optional[Sequence[str]] = None) -> m.HistoryResult:
        """What the bank knew about ``query`` at ``as_of``."""
        return await self._send(r.history(query, bank_id, as_of, max_results=max_results,
                                          max_tokens=max_tokens, tags=tags))

    async def banks(self) -> List[str]:
        """The banks of the caller's tenant."""
        return await self._send(r.banks())

    async def health(self) -> m.HealthStatus:
        """The server's health (its store reachable or not)."""
        return await self._send(r.health())

    async def job(self, job_id: str) -> m.Job:
        """A background job, by id."""
        return await self._send(r.job(job_id))

    async def wait_for_job(self, job_id: str, *, timeout: float = 30.0, interval: float = 0.1) -> m.Job:
        """Poll :meth:`job` until it is ``done`` or ``dead``; ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.job(job_id)
            if found.finished:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {found.state} after {timeout}s")
            await asyncio.sleep(interval)


