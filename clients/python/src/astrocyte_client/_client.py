"""The sync (:class:`Astrocyte`) and async (:class:`AsyncAstrocyte`) clients."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import httpx

from . import _models as m
from . import _requests as r
from ._errors import APIError, AstrocyteConnectionError, error_for
from ._requests import ImportData, When
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
        return False, self._failed(call, response, body, attempt)

    def _failed(self, call: r.Call, response: httpx.Response, body: Any, attempt: int) -> float:
        """Seconds to wait before retrying an error answer; raises its typed error when it is not
        retried."""
        headers = {k.lower(): v for k, v in response.headers.items()}
        error = error_for(response.status_code, body, headers)
        delay = self.retry.delay(attempt, response.status_code, body, headers)
        if delay is None:
            raise error
        log.info("astrocyte %s %s answered %s; retry %d in %.2fs", call.method, call.path,
                 response.status_code, attempt + 1, delay)
        if self._on_retry is not None:
            self._on_retry(attempt + 1, delay, error)
        return delay


class Astrocyte(_Base):
    """Synchronous client of an Astrocyte server's REST API.

    ``Astrocyte("http://127.0.0.1:8080", api_key="ak_…")``; ``bearer_token=`` sends the key (or a
    JWT) as ``Authorization: Bearer``; ``principal=`` sets ``X-Astrocyte-Principal`` (dev mode);
    ``admin_token=`` sets ``X-Admin-Token`` for admin routes (``export_bank()``, ``import_bank()``) on
    a server that has one.
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
                response = self._http.request(call.method, call.path, json=call.body, params=call.params,
                                              content=call.content, headers=call.headers)
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
        """The names of the banks the caller may read (``GET /v1/banks``; no admin token needed)."""
        return self._send(r.banks())

    def bank_summaries(self) -> List[m.BankSummary]:
        """The banks the caller may read, with their memory counts and newest retain."""
        return self._send(r.bank_summaries())

    def list_memories(self, bank_id: str, *, limit: Optional[int] = None, cursor: Optional[str] = None,
                      order: Optional[str] = None, tags: Optional[Sequence[str]] = None,
                      fact_types: Optional[Sequence[str]] = None, start: Optional[When] = None,
                      end: Optional[When] = None, text_prefix: Optional[str] = None,
                      contains: Optional[str] = None) -> m.MemoryPage:
        """One page of a bank's memories, newest first (``order="id"``: by id); pass the page's
        ``next_cursor`` as ``cursor`` for the next. ``tags`` match any of them; ``start``/``end``
        bound when they happened; ``text_prefix``/``contains`` match the text, ignoring case."""
        return self._send(r.list_memories(bank_id, limit=limit, cursor=cursor, order=order, tags=tags,
                                          fact_types=fact_types, start=start, end=end,
                                          text_prefix=text_prefix, contains=contains))

    def iter_memories(self, bank_id: str, *, limit: Optional[int] = None, cursor: Optional[str] = None,
                      order: Optional[str] = None, tags: Optional[Sequence[str]] = None,
                      fact_types: Optional[Sequence[str]] = None, start: Optional[When] = None,
                      end: Optional[When] = None, text_prefix: Optional[str] = None,
                      contains: Optional[str] = None) -> Iterator[m.Memory]:
        """Every memory :meth:`list_memories` selects, following the cursors (``limit`` is the
        page size); pages are fetched as the iteration reaches them."""
        while True:
            page = self.list_memories(bank_id, limit=limit, cursor=cursor, order=order, tags=tags,
                                      fact_types=fact_types, start=start, end=end, text_prefix=text_prefix,
                                      contains=contains)
            yield from page.memories
            if not page.next_cursor or not page.memories:
                return
            cursor = page.next_cursor

    def get_memory(self, bank_id: str, memory_id: str) -> m.MemoryDetail:
        """One memory with its retain's chunks and its change history; ``NotFoundError`` when absent."""
        return self._send(r.get_memory(bank_id, memory_id))

    def update_memory(self, bank_id: str, memory_id: str, *, tags: Optional[Sequence[str]] = None,
                      metadata: Optional[Dict[str, Any]] = None) -> m.Memory:
        """Replace a memory's tags and/or metadata (each one given replaces the stored one)."""
        return self._send(r.update_memory(bank_id, memory_id, tags=tags, metadata=metadata))

    def delete_memory(self, bank_id: str, memory_id: str) -> m.DeleteMemoryResult:
        """Forget one memory; ``NotFoundError`` when it is not there."""
        return self._send(r.delete_memory(bank_id, memory_id))

    def changes(self, bank_id: str, since: Optional[str] = None, limit: Optional[int] = None) -> m.ChangesPage:
        """The bank's change feed after the cursor ``since`` (from the start when None), oldest
        first: created, updated and forgotten entries (a forgotten memory's entries carry
        ``memory=None``)."""
        return self._send(r.changes(bank_id, since=since, limit=limit))

    def entities(self, bank_id: str, prefix: Optional[str] = None, kind: Optional[str] = None,
                 limit: Optional[int] = None) -> List[m.Entity]:
        """The bank's entities (people, places, organizations, products, other), counted over its
        visible memories, most memories first (ties by key): only keys starting with ``prefix``
        (lower-case), only ``kind`` (person, place, organization, product or other; else
        ``BadRequestError``), at most ``limit`` (1 to 1000, server default 100)."""
        return self._send(r.entities(bank_id, prefix=prefix, kind=kind, limit=limit))

    def export_bank(self, bank_id: str, include_embeddings: bool = False) -> Iterator[str]:
        """The bank as AMA v1 JSON Lines (a header line, then one memory a line), streamed: the
        request is made when the iteration starts and lines are yielded as they arrive (without
        their newline). An admin route: on a server with an admin token it needs ``admin_token=``."""
        call = r.export_bank(bank_id, include_embeddings=include_embeddings)
        attempt = 0
        while True:
            try:
                with self._http.stream(call.method, call.path, params=call.params,
                                       headers=call.headers) as response:
                    if response.is_success:
                        for line in response.iter_lines():
                            if line:
                                yield line
                        return
                    response.read()
                    delay = self._failed(call, response, _decode(response), attempt)
            except httpx.TransportError as error:
                raise AstrocyteConnectionError(f"{call.method} {call.path}: {error}") from error
            time.sleep(delay)
            attempt += 1

    def import_bank(self, bank_id: str, data: ImportData, on_conflict: str = "skip") -> m.ImportResult:
        """Import AMA v1 JSON Lines (bytes, text, or an iterable of lines such as
        :meth:`export_bank`'s) into ``bank_id``; ids that exist are skipped or, with
        ``on_conflict="overwrite"``, replaced. Refused lines are counted in ``errors`` and listed in
        ``rejected`` by line number. An admin route, like :meth:`export_bank`."""
        return self._send(r.import_bank(bank_id, r.jsonl_bytes(data), on_conflict=on_conflict))

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
                response = await self._http.request(call.method, call.path, json=call.body, params=call.params,
                                                    content=call.content, headers=call.headers)
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
        """The names of the banks the caller may read (``GET /v1/banks``; no admin token needed)."""
        return await self._send(r.banks())

    async def bank_summaries(self) -> List[m.BankSummary]:
        """The banks the caller may read, with their memory counts and newest retain."""
        return await self._send(r.bank_summaries())

    async def list_memories(self, bank_id: str, *, limit: Optional[int] = None, cursor: Optional[str] = None,
                            order: Optional[str] = None, tags: Optional[Sequence[str]] = None,
                            fact_types: Optional[Sequence[str]] = None, start: Optional[When] = None,
                            end: Optional[When] = None, text_prefix: Optional[str] = None,
                            contains: Optional[str] = None) -> m.MemoryPage:
        """One page of a bank's memories, newest first (``order="id"``: by id); pass the page's
        ``next_cursor`` as ``cursor`` for the next."""
        return await self._send(r.list_memories(bank_id, limit=limit, cursor=cursor, order=order, tags=tags,
                                                fact_types=fact_types, start=start, end=end,
                                                text_prefix=text_prefix, contains=contains))

    async def iter_memories(self, bank_id: str, *, limit: Optional[int] = None, cursor: Optional[str] = None,
                            order: Optional[str] = None, tags: Optional[Sequence[str]] = None,
                            fact_types: Optional[Sequence[str]] = None, start: Optional[When] = None,
                            end: Optional[When] = None, text_prefix: Optional[str] = None,
                            contains: Optional[str] = None) -> AsyncIterator[m.Memory]:
        """Every memory :meth:`list_memories` selects, following the cursors: ``async for``."""
        while True:
            page = await self.list_memories(bank_id, limit=limit, cursor=cursor, order=order, tags=tags,
                                            fact_types=fact_types, start=start, end=end,
                                            text_prefix=text_prefix, contains=contains)
            for memory in page.memories:
                yield memory
            if not page.next_cursor or not page.memories:
                return
            cursor = page.next_cursor

    async def get_memory(self, bank_id: str, memory_id: str) -> m.MemoryDetail:
        """One memory with its retain's chunks and its change history; ``NotFoundError`` when absent."""
        return await self._send(r.get_memory(bank_id, memory_id))

    async def update_memory(self, bank_id: str, memory_id: str, *, tags: Optional[Sequence[str]] = None,
                            metadata: Optional[Dict[str, Any]] = None) -> m.Memory:
        """Replace a memory's tags and/or metadata (each one given replaces the stored one)."""
        return await self._send(r.update_memory(bank_id, memory_id, tags=tags, metadata=metadata))

    async def delete_memory(self, bank_id: str, memory_id: str) -> m.DeleteMemoryResult:
        """Forget one memory; ``NotFoundError`` when it is not there."""
        return await self._send(r.delete_memory(bank_id, memory_id))

    async def changes(self, bank_id: str, since: Optional[str] = None,
                      limit: Optional[int] = None) -> m.ChangesPage:
        """The bank's change feed after the cursor ``since`` (from the start when None), oldest first."""
        return await self._send(r.changes(bank_id, since=since, limit=limit))

    async def entities(self, bank_id: str, prefix: Optional[str] = None, kind: Optional[str] = None,
                       limit: Optional[int] = None) -> List[m.Entity]:
        """The bank's entities, most memories first; see :meth:`Astrocyte.entities`."""
        return await self._send(r.entities(bank_id, prefix=prefix, kind=kind, limit=limit))

    async def export_bank(self, bank_id: str, include_embeddings: bool = False) -> AsyncIterator[str]:
        """The bank as AMA v1 JSON Lines, streamed: ``async for line in brain.export_bank(b)``."""
        call = r.export_bank(bank_id, include_embeddings=include_embeddings)
        attempt = 0
        while True:
            try:
                async with self._http.stream(call.method, call.path, params=call.params,
                                             headers=call.headers) as response:
                    if response.is_success:
                        async for line in response.aiter_lines():
                            if line:
                                yield line
                        return
                    await response.aread()
                    delay = self._failed(call, response, _decode(response), attempt)
            except httpx.TransportError as error:
                raise AstrocyteConnectionError(f"{call.method} {call.path}: {error}") from error
            await asyncio.sleep(delay)
            attempt += 1

    async def import_bank(self, bank_id: str, data: Union[ImportData, AsyncIterator[Union[str, bytes]]],
                          on_conflict: str = "skip") -> m.ImportResult:
        """Import AMA v1 JSON Lines (bytes, text, or an iterable or async iterable of lines such as
        :meth:`export_bank`'s) into ``bank_id``; see :meth:`Astrocyte.import_bank`."""
        if hasattr(data, "__aiter__"):
            data = [line async for line in data]  # type: ignore[union-attr]
        return await self._send(r.import_bank(bank_id, r.jsonl_bytes(data), on_conflict=on_conflict))

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


