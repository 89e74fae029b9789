/** The retry policy: which answers are retried and how long to wait before the next attempt. */

export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 503]);

/** `Retry-After` in seconds: a number of seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfterHeader(value: string | null | undefined): number | null {
  if (value == null) return null;
  const text = value.trim();
  if (text === "") return null;
  const seconds = Number(text);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, (when - Date.now()) / 1000);
}

export interface RetryPolicy {
  /** Retries after the first attempt (0 disables retrying). Default 3. */
  maxRetries: number;
  /** First step of the exponential backoff when the server gives no hint, in ms. Default 500. */
  backoffBaseMs: number;
  /** Longest backoff step, in ms. Default 30 000. */
  backoffMaxMs: number;
  /** Longest server-requested wait that is slept through, in ms; a longer one (a daily quota)
   * is thrown at once. Default 60 000. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxRetries: 3,
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  maxRetryAfterMs: 60_000,
};

/** Milliseconds to wait before retry number `attempt + 1`, or null to give up now. */
export function retryDelayMs(
  policy: RetryPolicy,
  attempt: number,
  status: number,
  body: unknown,
  headers: Headers,
): number | null {
  if (!RETRYABLE_STATUSES.has(status) || attempt >= policy.maxRetries) return null;
  let requested: number | null = null;
  const hint = (body as { retry_after_seconds?: unknown } | null)?.retry_after_seconds;
  if (typeof hint === "number" && Number.isFinite(hint)) requested = Math.max(0, hint) * 1000;
  if (requested === null) {
    const header = parseRetryAfterHeader(headers.get("retry-after"));
    if (header !== null) requested = header * 1000;
  }
  const backoff = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** attempt);
  if (requested === null) {
    // Full jitter on the exponential step, never below a tenth of it.
    return backoff / 10 + Math.random() * (backoff - backoff / 10);
  }
  if (requested > policy.maxRetryAfterMs) return null;
  // The server's hint plus a little jitter, so that many clients do not come back at once.
  return requested + Math.random() * (Math.min(backoff, 1000) / 4);
}
