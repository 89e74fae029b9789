"""What each method sends and how its answer is read, shared by the sync and async clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from . import _models as m

When = Union[datetime, date, str]


def iso(value: When) -> str:
    """A datetime (naive means UTC on the server), a date, or an ISO 8601 string as sent."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a datetime, date or ISO 8601 string, got {type(value).__name__}")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Optional[Dict[str, Any]]
    parse: Callable[[Any], Any]


def _put(body: Dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def retain(content: str, bank_id: str, *, metadata: Optional[Dict[str, Any]], tags: Optional[Sequence[str]],
           occurred_at: Optional[When], content_type: Optional[str], idempotency_key: Optional[str],
           run_async: bool, thread_id: Optional[str] = None) -> Call:
    body: Dict[str, Any] = {"content": content, "bank_id": bank_id}
    _put(body, "metadata", metadata)
    _put(body, "tags", None if tags is None else list(tags))
    _put(body, "occurred_at", None if occurred_at is None else iso(occurred_at))
    _put(body, "content_type", content_type)
    _put(body, "idempotency_key", idempotency_key)
    _put(body, "thread_id", thread_id)
    if run_async:
        body["async"] = True
    return Call("POST", "/v1/retain", body, m.RetainResult.from_json)


def recall(query: str, bank_id: Optional[str], *, banks: Optional[Sequence[str]], max_results: Optional[int],
           max_tokens: Optional[int], tags: Optional[Sequence[str]],
           time_range: Optional[Tuple[When, When]], as_of: Optional[When]) -> Call:
    if bank_id is None and not banks:
        raise ValueError("recall needs bank_id or banks")
    body: Dict[str, Any] = {"query": query}
    _put(body, "bank_id", bank_id)
    _put(body, "banks", None if banks is None else list(banks))
    _put(body, "max_results", max_results)
    _put(body, "max_tokens", max_tokens)
    _put(body, "tags", None if tags is None else list(tags))
    if time_range is not None:
        start, end = time_range
        body["time_range"] = [iso(start), iso(end)]
    _put(body, "as_of", None if as_of is None else iso(as_of))
    return Call("POST", "/v1/recall", body, m.RecallResult.from_json)


def reflect(query: str, bank_id: str, *, max_tokens: Optional[int], include_sources: bool) -> Call:
    body: Dict[str, Any] = {"query": query, "bank_id": bank_id, "include_sources": include_sources}
    _put(body, "max_tokens", max_tokens)
    return Call("POST", "/v1/reflect", body, m.ReflectResult.from_json)


def forget(bank_id: str, *, memory_ids: Optional[Sequence[str]], tags: Optional[Sequence[str]],
           before_date: Optional[When], scope: Optional[str]) -> Call:
    body: Dict[str, Any] = {"bank_id": bank_id}
    _put(body, "memory_ids", None if memory_ids is None else list(memory_ids))
    _put(body, "tags", None if tags is None else list(tags))
    _put(body, "before_date", None if before_date is None else iso(before_date))
    _put(body, "scope", scope)
    return Call("POST", "/v1/forget", body, m.ForgetResult.from_json)


def history(query: str, bank_id: str, as_of: When, *, max_results: Optional[int], max_tokens: Optional[int],
            tags: Optional[Sequence[str]]) -> Call:
    body: Dict[str, Any] = {"query": query, "bank_id": bank_id, "as_of": iso(as_of)}
    _put(body, "max_results", max_results)
    _put(body, "max_tokens", max_tokens)
    _put(body, "tags", None if tags is None else list(tags))
    return Call("POST", "/v1/history", body, m.HistoryResult.from_json)


def banks() -> Call:
    return Call("GET", "/v1/admin/banks", None, lambda data: list(data.get("banks") or []))


def health() -> Call:
    return Call("GET", "/health", None, m.HealthStatus.from_json)


def job(job_id: str) -> Call:
    if not job_id:
        raise ValueError("job_id must not be empty")
    return Call("GET", "/v1/jobs/" + quote(job_id, safe=""), None, m.Job.from_json)
