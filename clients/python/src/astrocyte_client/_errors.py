"""Typed exceptions, one per kind of failure the server reports (its `error::ErrorCode` table)."""

from __future__ import annotations

from typing import Any, Mapping, Optional


class AstrocyteError(Exception):
    """Base of every error this client raises."""


class AstrocyteConnectionError(AstrocyteError):
    """The server could not be reached, or the connection failed mid-request."""


class APIError(AstrocyteError):
    """The server answered with an error status.

    ``status`` is the HTTP status, ``detail`` the server's ``detail`` (or ``error``) field,
    ``body`` the whole decoded JSON body (or the raw text when it was not JSON).
    """

    status: int

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body
        self.headers = dict(headers or {})
        self.request_id = self.headers.get("x-request-id")


class BadRequestError(APIError):
    """400: the request is invalid (missing or malformed fields, limits exceeded)."""


class UnauthenticatedError(APIError):
    """401: no credential, or one the server refused."""


class ForbiddenError(APIError):
    """403: the principal lacks the permission on that bank (or the bank is under legal hold)."""


class NotFoundError(APIError):
    """404: no such resource (a job id, a key id)."""


class ConflictError(APIError):
    """409: the request conflicts with the server's state."""


class PayloadTooLargeError(APIError):
    """413: the request body is over the server's cap."""


class PiiRejectedError(APIError):
    """422: the content holds PII and the server's policy rejects it; ``pii_types`` names it."""

    def __init__(self, status: int, detail: str, *, body: Any = None,
                 headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(status, detail, body=body, headers=headers)
        types = body.get("pii_types") if isinstance(body, dict) else None
        self.pii_types: list = list(types) if isinstance(types, list) else []


def _retry_after(body: Any, headers: Mapping[str, str]) -> Optional[float]:
    if isinstance(body, dict):
        value = body.get("retry_after_seconds")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    from ._retry import parse_retry_after_header

    return parse_retry_after_header(headers.get("retry-after"))


class RateLimitedError(APIError):
    """429: a rate limit or daily quota was hit; ``retry_after_seconds`` says when to try again."""

    def __init__(self, status: int, detail: str, *, body: Any = None,
                 headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(status, detail, body=body, headers=headers)
        self.retry_after_seconds: Optional[float] = _retry_after(body, self.headers)


class ServerError(APIError):
    """5xx: the server failed; its detail is fixed and says nothing of the cause."""


class UnsupportedError(ServerError):
    """501: the server does not support this operation in its configuration."""


class UnavailableError(ServerError):
    """503: a dependency (the store) is unreachable; ``retry_after_seconds`` from ``Retry-After``."""

    def __init__(self, status: int, detail: str, *, body: Any = None,
                 headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(status, detail, body=body, headers=headers)
        self.retry_after_seconds: Optional[float] = _retry_after(body, self.headers)


_BY_STATUS = {
    400: BadRequestError,
    401: UnauthenticatedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: PiiRejectedError,
    429: RateLimitedError,
    501: UnsupportedError,
    503: UnavailableError,
}


def error_for(status: int, body: Any, headers: Mapping[str, str]) -> APIError:
    """The typed exception for an error response."""
    if isinstance(body, dict):
        detail = body.get("detail", body.get("error"))
        if not isinstance(detail, str):
            detail = str(detail) if detail is not None else ""
    elif isinstance(body, str):
        detail = body
    else:
        detail = ""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(status, detail, body=body, headers=headers)
