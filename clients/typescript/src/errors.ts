/** Typed errors, one per kind of failure the server reports (its `ErrorCode` table). */

import { parseRetryAfterHeader } from "./retry.js";

/** Base of every error this client throws. */
export class AstrocyteError extends Error {
  override name = "AstrocyteError";
}

/** The server could not be reached, the connection failed, or the request timed out. */
export class AstrocyteConnectionError extends AstrocyteError {
  override name = "AstrocyteConnectionError";
}

/** The server answered with an error status; `detail` is its `detail` (or `error`) field. */
export class ApiError extends AstrocyteError {
  override name = "ApiError";
  readonly status: number;
  readonly detail: string;
  readonly body: unknown;
  readonly headers: Headers;
  /** The server's `x-request-id`, to find the request in its logs. */
  readonly requestId: string | null;

  constructor(status: number, detail: string, body: unknown, headers: Headers) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
    this.body = body;
    this.headers = headers;
    this.requestId = headers.get("x-request-id");
  }
}

/** 400: the request is invalid (missing or malformed fields, limits exceeded). */
export class BadRequestError extends ApiError {
  override name = "BadRequestError";
}
/** 401: no credential, or one the server refused. */
export class UnauthenticatedError extends ApiError {
  override name = "UnauthenticatedError";
}
/** 403: the principal lacks the permission on that bank, or the admin token is wrong. */
export class ForbiddenError extends ApiError {
  override name = "ForbiddenError";
}
/** 404: no such resource (a job id, a key id). */
export class NotFoundError extends ApiError {
  override name = "NotFoundError";
}
/** 409: the request conflicts with the server's state. */
export class ConflictError extends ApiError {
  override name = "ConflictError";
}
/** 413: the request body is over the server's cap. */
export class PayloadTooLargeError extends ApiError {
  override name = "PayloadTooLargeError";
}

/** 422: the content holds PII the server's policy rejects; `piiTypes` names it. */
export class PiiRejectedError extends ApiError {
  override name = "PiiRejectedError";
  readonly piiTypes: string[];
  constructor(status: number, detail: string, body: unknown, headers: Headers) {
    super(status, detail, body, headers);
    const types = (body as { pii_types?: unknown } | null)?.pii_types;
    this.piiTypes = Array.isArray(types) ? types.map(String) : [];
  }
}

function retryAfterOf(body: unknown, headers: Headers): number | null {
  const value = (body as { retry_after_seconds?: unknown } | null)?.retry_after_seconds;
  if (typeof value === "number" && Number.isFinite(value)) return value;
  return parseRetryAfterHeader(headers.get("retry-after"));
}

/** 429: a rate limit or daily quota was hit; `retryAfterSeconds` says when to try again. */
export class RateLimitedError extends ApiError {
  override name = "RateLimitedError";
  readonly retryAfterSeconds: number | null;
  constructor(status: number, detail: string, body: unknown, headers: Headers) {
    super(status, detail, body, headers);
    this.retryAfterSeconds = retryAfterOf(body, headers);
  }
}

/** 5xx: the server failed; its detail is fixed and says nothing of the cause. */
export class ServerError extends ApiError {
  override name = "ServerError";
}
/** 501: not supported in the server's configuration. */
export class UnsupportedError extends ServerError {
  override name = "UnsupportedError";
}
/** 503: a dependency (store, embeddings provider) is unreachable; `retryAfterSeconds` from `Retry-After`. */
export class UnavailableError extends ServerError {
  override name = "UnavailableError";
  readonly retryAfterSeconds: number | null;
  constructor(status: number, detail: string, body: unknown, headers: Headers) {
    super(status, detail, body, headers);
    this.retryAfterSeconds = retryAfterOf(body, headers);
  }
}

type ErrorClass = new (status: number, detail: string, body: unknown, headers: Headers) => ApiError;

const BY_STATUS: Record<number, ErrorClass> = {
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
};

/** The typed error for an error response. */
export function errorFor(status: number, body: unknown, headers: Headers): ApiError {
  let detail = "";
  if (body && typeof body === "object") {
    const { detail: d, error: e } = body as { detail?: unknown; error?: unknown };
    const value = d ?? e;
    detail = typeof value === "string" ? value : value == null ? "" : JSON.stringify(value);
  } else if (typeof body === "string") {
    detail = body;
  }
  const Class = BY_STATUS[status] ?? (status >= 500 ? ServerError : ApiError);
  return new Class(status, detail, body, headers);
}
