"""Typed results, named and shaped as the Python reference's types (``astrocyte.types``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_datetime(value: Any) -> Optional[datetime]:
    """An ISO 8601 timestamp from the server (``Z`` or an offset, up to nanoseconds)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(r"\1", text)  # datetime keeps microseconds; the server may send nanos
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


@dataclass
class MemoryHit:
    """One recalled memory."""

    text: str
    score: float
    fact_type: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None
    tags: Optional[List[str]] = None
    occurred_at: Optional[datetime] = None
    source: Optional[str] = None
    memory_id: Optional[str] = None
    bank_id: Optional[str] = None
    memory_layer: Optional[str] = None
    utility_score: Optional[float] = None
    retained_at: Optional[datetime] = None
    chunk_id: Optional[str] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "MemoryHit":
        return cls(
            text=data["text"],
            score=float(data["score"]),
            fact_type=data.get("fact_type"),
            metadata=data.get("metadata"),
            tags=data.get("tags"),
            occurred_at=parse_datetime(data.get("occurred_at")),
            source=data.get("source"),
            memory_id=data.get("memory_id"),
            bank_id=data.get("bank_id"),
            memory_layer=data.get("memory_layer"),
            utility_score=_float(data.get("utility_score")),
            retained_at=parse_datetime(data.get("retained_at")),
            chunk_id=data.get("chunk_id"),
        )


@dataclass
class RecallTrace:
    """How a recall was computed."""

    strategies_used: List[str] = field(default_factory=list)
    total_candidates: int = 0
    fusion_method: str = ""
    latency_ms: float = 0.0
    strategy_timings_ms: Dict[str, float] = field(default_factory=dict)
    strategy_candidate_counts: Dict[str, int] = field(default_factory=dict)
    tier_used: Optional[int] = None
    layer_distribution: Optional[Dict[str, int]] = None
    cache_hit: bool = False
    wiki_tier_used: bool = False

    @classmethod
    def from_json(cls, data: Optional[Dict[str, Any]]) -> Optional["RecallTrace"]:
        if data is None:
            return None
        return cls(
            strategies_used=list(data.get("strategies_used") or []),
            total_candidates=int(data.get("total_candidates") or 0),
            fusion_method=data.get("fusion_method") or "",
            latency_ms=float(data.get("latency_ms") or 0.0),
            strategy_timings_ms=dict(data.get("strategy_timings_ms") or {}),
            strategy_candidate_counts=dict(data.get("strategy_candidate_counts") or {}),
            tier_used=data.get("tier_used"),
            layer_distribution=data.get("layer_distribution"),
            cache_hit=bool(data.get("cache_hit", False)),
            wiki_tier_used=bool(data.get("wiki_tier_used", False)),
        )


@dataclass
class RetainResult:
    """The outcome of a retain; with ``run_async=True`` it carries ``job_id`` and ``job_state``."""

    stored: bool
    memory_id: Optional[str] = None
    deduplicated: bool = False
    error: Optional[str] = None
    retention_action: Optional[str] = None
    curated: bool = False
    memory_layer: Optional[str] = None
    job_id: Optional[str] = None
    job_state: Optional[str] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "RetainResult":
        return cls(
            stored=bool(data.get("stored", False)),
            memory_id=data.get("memory_id"),
            deduplicated=bool(data.get("deduplicated", False)),
            error=data.get("error"),
            retention_action=data.get("retention_action"),
            curated=bool(data.get("curated", False)),
            memory_layer=data.get("memory_layer"),
            job_id=data.get("job_id"),
            job_state=data.get("job_state"),
        )


@dataclass
class RecallResult:
    """Recalled memories, best first, trimmed to the token budget."""

    hits: List[MemoryHit]
    total_available: int
    truncated: bool
    trace: Optional[RecallTrace] = None
    authority_context: Optional[str] = None
    top_semantic_score: float = 0.0

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "RecallResult":
        return cls(
            hits=[MemoryHit.from_json(h) for h in data.get("hits") or []],
            total_available=int(data.get("total_available") or 0),
            truncated=bool(data.get("truncated", False)),
            trace=RecallTrace.from_json(data.get("trace")),
            authority_context=data.get("authority_context"),
            top_semantic_score=float(data.get("top_semantic_score") or 0.0),
        )


@dataclass
class ReflectResult:
    """An answer built from recalled memories, with the memories it used as ``sources``."""

    answer: str
    confidence: Optional[float] = None
    sources: Optional[List[MemoryHit]] = None
    observations: Optional[List[str]] = None
    authority_context: Optional[str] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ReflectResult":
        sources = data.get("sources")
        return cls(
            answer=data.get("answer") or "",
            confidence=_float(data.get("confidence")),
            sources=None if sources is None else [MemoryHit.from_json(h) for h in sources],
            observations=data.get("observations"),
            authority_context=data.get("authority_context"),
        )


@dataclass
class ForgetResult:
    """How many memories a forget removed."""

    deleted_count: int
    archived_count: int = 0

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ForgetResult":
        return cls(
            deleted_count=int(data.get("deleted_count") or 0),
            archived_count=int(data.get("archived_count") or 0),
        )


@dataclass
class HistoryResult:
    """What a bank knew at ``as_of``."""

    hits: List[MemoryHit]
    total_available: int
    truncated: bool
    as_of: datetime
    bank_id: str
    trace: Optional[RecallTrace] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "HistoryResult":
        as_of = parse_datetime(data.get("as_of"))
        assert as_of is not None, "history answer without as_of"
        return cls(
            hits=[MemoryHit.from_json(h) for h in data.get("hits") or []],
            total_available=int(data.get("total_available") or 0),
            truncated=bool(data.get("truncated", False)),
            as_of=as_of,
            bank_id=data.get("bank_id") or "",
            trace=RecallTrace.from_json(data.get("trace")),
        )


@dataclass
class HealthStatus:
    """The server's health: whether its store answers, and how fast."""

    healthy: bool
    message: str
    latency_ms: Optional[float] = None
    last_check_at: Optional[datetime] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "HealthStatus":
        return cls(
            healthy=bool(data.get("healthy", False)),
            message=data.get("message") or "",
            latency_ms=_float(data.get("latency_ms")),
            last_check_at=parse_datetime(data.get("last_check_at")),
        )


@dataclass
class Job:
    """A background job (an async retain, a maintenance job)."""

    job_id: str
    kind: str
    state: str
    attempts: int
    last_error: Optional[str] = None
    result: Any = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None

    @property
    def finished(self) -> bool:
        """Whether the job has reached a final state (``done`` or ``dead``)."""
        return self.state in ("done", "dead")

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Job":
        return cls(
            job_id=data["job_id"],
            kind=data.get("kind") or "",
            state=data.get("state") or "",
            attempts=int(data.get("attempts") or 0),
            last_error=data.get("last_error"),
            result=data.get("result"),
            created_at=parse_datetime(data.get("created_at")),
            updated_at=parse_datetime(data.get("updated_at")),
        )


@dataclass
class Memory:
    """A stored memory as the browse routes show it (``GET /v1/banks/{bank}/memories``)."""

    memory_id: str
    bank_id: str
    text: str
    tags: List[str] = field(default_factory=list)
    metadata: Dict[str, Any] = field(default_factory=dict)
    fact_type: str = ""
    retained_at: Optional[datetime] = None
    occurred_at: Optional[datetime] = None
    source: Optional[str] = None
    chunk_id: Optional[str] = None
    chunk_count: int = 1
    thread: Optional[str] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Memory":
        return cls(
            memory_id=data["memory_id"],
            bank_id=data.get("bank_id") or "",
            text=data.get("text") or "",
            tags=list(data.get("tags") or []),
            metadata=dict(data.get("metadata") or {}),
            fact_type=data.get("fact_type") or "",
            retained_at=parse_datetime(data.get("retained_at")),
            occurred_at=parse_datetime(data.get("occurred_at")),
            source=data.get("source"),
            chunk_id=data.get("chunk_id"),
            chunk_count=int(data.get("chunk_count") or 1),
            thread=data.get("thread"),
        )


@dataclass
class MemoryPage:
    """A page of a bank's memories; ``next_cursor`` (None on the last page) fetches the next."""

    memories: List[Memory]
    next_cursor: Optional[str] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "MemoryPage":
        return cls(
            memories=[Memory.from_json(x) for x in data.get("memories") or []],
            next_cursor=data.get("next_cursor"),
        )


@dataclass
class MemoryChange:
    """One entry of a change log: ``kind`` is ``created``, ``updated`` or ``forgotten``.

    In :meth:`changes` answers ``memory`` is the memory as it is now, None once it is forgotten
    (a tombstone); in a memory's ``history`` it is always None."""

    cursor: str
    kind: str
    memory_id: str
    at: Optional[datetime] = None
    memory: Optional[Memory] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "MemoryChange":
        memory = data.get("memory")
        return cls(
            cursor=str(data["cursor"]),
            kind=data.get("kind") or "",
            memory_id=data.get("memory_id") or "",
            at=parse_datetime(data.get("at")),
            memory=None if memory is None else Memory.from_json(memory),
        )


@dataclass
class MemoryDetail:
    """One memory, every chunk of the retain it came from (itself included), and its history."""

    memory: Memory
    chunks: List[Memory] = field(default_factory=list)
    history: List[MemoryChange] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "MemoryDetail":
        return cls(
            memory=Memory.from_json(data["memory"]),
            chunks=[Memory.from_json(x) for x in data.get("chunks") or []],
            history=[MemoryChange.from_json(x) for x in data.get("history") or []],
        )


@dataclass
class ChangesPage:
    """A page of a bank's change feed, oldest first; pass ``next_cursor`` as ``since`` to go on."""

    changes: List[MemoryChange]
    next_cursor: Optional[str] = None
    has_more: bool = False

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ChangesPage":
        return cls(
            changes=[MemoryChange.from_json(x) for x in data.get("changes") or []],
            next_cursor=data.get("next_cursor"),
            has_more=bool(data.get("has_more", False)),
        )


@dataclass
class Entity:
    """A person, place, organization, product or other name a bank's memories mention, counted
    over its visible memories: ``key`` is the lower-case matching key, ``name`` as most recently
    written, ``memories`` the memories that mention it, ``mentions`` the mentions across them, and
    ``last_seen`` the event (else retention) time of the newest of them."""

    key: str
    name: str = ""
    kind: str = ""
    memories: int = 0
    mentions: int = 0
    last_seen: Optional[datetime] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Entity":
        return cls(
            key=data["key"],
            name=data.get("name") or "",
            kind=data.get("kind") or "",
            memories=int(data.get("memories") or 0),
            mentions=int(data.get("mentions") or 0),
            last_seen=parse_datetime(data.get("last_seen")),
        )


@dataclass
class DeleteMemoryResult:
    """The answer of :meth:`delete_memory` (a memory that is not there is a 404 instead)."""

    memory_id: str
    forgotten: bool = True

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "DeleteMemoryResult":
        return cls(memory_id=data.get("memory_id") or "", forgotten=bool(data.get("forgotten", False)))


@dataclass
class BankSummary:
    """A bank the caller may read, with its memory count and its newest retain."""

    bank_id: str
    memory_count: int = 0
    last_retained_at: Optional[datetime] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "BankSummary":
        return cls(
            bank_id=data["bank_id"],
            memory_count=int(data.get("memory_count") or 0),
            last_retained_at=parse_datetime(data.get("last_retained_at")),
        )


@dataclass
class RejectedLine:
    """An import line the server refused: its 1-based number (the header is line 1) and why."""

    line: int
    reason: str

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "RejectedLine":
        return cls(line=int(data.get("line") or 0), reason=data.get("reason") or "")


@dataclass
class ImportResult:
    """What an import wrote (``imported``), left alone (``skipped``) and refused (``errors``,
    the first 10,000 of them in ``rejected``)."""

    imported: int
    skipped: int = 0
    errors: int = 0
    rejected: List[RejectedLine] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ImportResult":
        return cls(
            imported=int(data.get("imported") or 0),
            skipped=int(data.get("skipped") or 0),
            errors=int(data.get("errors") or 0),
            rejected=[RejectedLine.from_json(x) for x in data.get("rejected") or []],
        )
