"""Python clients for the Astrocyte memory server's REST API.

``Astrocyte`` (sync) and ``AsyncAstrocyte`` (async) have the method names and argument names of
the Python reference's ``Astrocyte`` object: retain, recall, reflect, forget, history, plus
banks, health and job; and the browse/manage routes: bank_summaries, list_memories,
iter_memories, get_memory, update_memory, delete_memory, changes, entities, export_bank,
import_bank.
"""

from ._client import DEFAULT_BASE_URL, AsyncAstrocyte, Astrocyte
from ._errors import (
    APIError,
    AstrocyteConnectionError,
    AstrocyteError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    PiiRejectedError,
    RateLimitedError,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedError,
)
from ._models import (
    BankSummary,
    ChangesPage,
    DeleteMemoryResult,
    Entity,
    ForgetResult,
    HealthStatus,
    HistoryResult,
    ImportResult,
    Job,
    Memory,
    MemoryChange,
    MemoryDetail,
    MemoryHit,
    MemoryPage,
    RecallResult,
    RecallTrace,
    ReflectResult,
    RejectedLine,
    RetainResult,
)
from ._retry import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "Astrocyte",
    "AsyncAstrocyte",
    "DEFAULT_BASE_URL",
    "RetryPolicy",
    "RetainResult",
    "RecallResult",
    "RecallTrace",
    "ReflectResult",
    "ForgetResult",
    "HistoryResult",
    "HealthStatus",
    "Job",
    "MemoryHit",
    "Memory",
    "MemoryPage",
    "MemoryDetail",
    "MemoryChange",
    "ChangesPage",
    "Entity",
    "DeleteMemoryResult",
    "BankSummary",
    "ImportResult",
    "RejectedLine",
    "AstrocyteError",
    "AstrocyteConnectionError",
    "APIError",
    "BadRequestError",
    "UnauthenticatedError",
    "ForbiddenError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "PiiRejectedError",
    "RateLimitedError",
    "ServerError",
    "UnsupportedError",
    "UnavailableError",
]
