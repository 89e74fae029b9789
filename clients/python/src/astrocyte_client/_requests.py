"""What each method sends and how its answer is read, shared by the sync and async clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, Union
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
    #: Query parameters (absent ones left out).
    params: Optional[Dict[str, str]] = None
    #: A raw request body (sent instead of ``body`` as JSON), with its content type in ``headers``.
    content: Optional[bytes] = None
    headers: Optional[Dict[str, str]] = None


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


def _segment(name: str, value: str) -> str:
    if not value:
        raise ValueError(f"{name} must not be empty")
    return quote(value, safe="")


def _bank_path(bank_id: str, *rest: str) -> str:
    return "/".join(("/v1/banks", _segment("bank_id", bank_id), *rest))


def _params(**values: Any) -> Dict[str, str]:
    """Query parameters: absent ones dropped, sequences comma-joined, times as ISO 8601."""
    out: Dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (datetime, date)):
            out[key] = iso(value)
        elif isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out


def banks() -> Call:
    return Call("GET", "/v1/banks", None,
                lambda data: [b["bank_id"] for b in data.get("banks") or []])


def bank_summaries() -> Call:
    return Call("GET", "/v1/banks", None,
                lambda data: [m.BankSummary.from_json(b) for b in data.get("banks") or []])


def _words(value: Optional[Union[str, Sequence[str]]]) -> Optional[Sequence[str]]:
    """A sequence of words, or one (a ``str`` is one word, not its characters)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def list_memories(bank_id: str, *, limit: Optional[int], cursor: Optional[str], order: Optional[str],
                  tags: Optional[Sequence[str]], fact_types: Optional[Sequence[str]], start: Optional[When],
                  end: Optional[When], text_prefix: Optional[str], contains: Optional[str]) -> Call:
    params = _params(limit=limit, cursor=cursor, order=order, tags=_words(tags),
                     fact_type=_words(fact_types),
                     start=None if start is None else iso(start), end=None if end is None else iso(end),
                     text_prefix=text_prefix, contains=contains)
    return Call("GET", _bank_path(bank_id, "memories"), None, m.MemoryPage.from_json, params=params)


def get_memory(bank_id: str, memory_id: str) -> Call:
    return Call("GET", _bank_path(bank_id, "memories", _segment("memory_id", memory_id)), None,
                m.MemoryDetail.from_json)


def update_memory(bank_id: str, memory_id: str, *, tags: Optional[Sequence[str]],
                  metadata: Optional[Dict[str, Any]]) -> Call:
    body: Dict[str, Any] = {}
    _put(body, "tags", None if tags is None else list(tags))
    _put(body, "metadata", metadata)
    return Call("PATCH", _bank_path(bank_id, "memories", _segment("memory_id", memory_id)), body,
                m.Memory.from_json)


def delete_memory(bank_id: str, memory_id: str) -> Call:
    return Call("DELETE", _bank_path(bank_id, "memories", _segment("memory_id", memory_id)), None,
                m.DeleteMemoryResult.from_json)


def changes(bank_id: str, *, since: Optional[str], limit: Optional[int]) -> Call:
    return Call("GET", _bank_path(bank_id, "changes"), None, m.ChangesPage.from_json,
                params=_params(since=since, limit=limit))


def entities(bank_id: str, *, prefix: Optional[str], kind: Optional[str], limit: Optional[int]) -> Call:
    return Call("GET", _bank_path(bank_id, "entities"), None,
                lambda data: [m.Entity.from_json(e) for e in data.get("entities") or []],
                params=_params(prefix=prefix, kind=kind, limit=limit))


def export_bank(bank_id: str, *, include_embeddings: bool) -> Call:
    """The streamed export; ``parse`` is unused (the caller reads the lines)."""
    return Call("GET", _bank_path(bank_id, "export"), None, lambda data: data,
                params=_params(include_embeddings=True) if include_embeddings else None,
                headers={"Accept": "application/x-ndjson, application/json"})


#: What ``import_bank`` takes: the JSON Lines as bytes or text, or an iterable of lines.
ImportData = Union[bytes, bytearray, memoryview, str, Iterable[Union[str, bytes]]]


def _line(line: Union[str, bytes]) -> bytes:
    raw = line.encode("utf-8") if isinstance(line, str) else bytes(line)
    return raw if raw.endswith(b"\n") else raw + b"\n"


def jsonl_bytes(data: ImportData) -> bytes:
    """The request body for ``import_bank`` (kept whole so that a retry can send it again)."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return b"".join(_line(line) for line in data)


def import_bank(bank_id: str, content: bytes, *, on_conflict: str) -> Call:
    return Call("POST", _bank_path(bank_id, "import"), None, m.ImportResult.from_json,
                params=_params(on_conflict=on_conflict), content=content,
                headers={"Content-Type": "application/x-ndjson"})


def health() -> Call:
    return Call("GET", "/health", None, m.HealthStatus.from_json)


def job(job_id: str) -> Call:
    if not job_id:
        raise ValueError("job_id must not be empty")
    return Call("GET", "/v1/jobs/" + quote(job_id, safe=""), None, m.Job.from_json)
