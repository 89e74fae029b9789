/** The fetch-based client of an Astrocyte server's REST API. */

import type { components } from "./schema.js";
import { ApiError, AstrocyteConnectionError, AstrocyteError, errorFor } from "./errors.js";
import { DEFAULT_RETRY_POLICY, retryDelayMs, type RetryPolicy } from "./retry.js";

type Schemas = components["schemas"];

/** Results: the server's wire shapes, generated from its OpenAPI document. */
export type RetainResult = Schemas["RetainResponse"];
export type RecallResult = Schemas["RecallResponse"];
export type MemoryHit = Schemas["MemoryHitDto"];
export type RecallTrace = Schemas["RecallTraceDto"];
export type ReflectResult = Schemas["ReflectResponse"];
export type ForgetResult = Schemas["ForgetResponse"];
export type HistoryResult = Schemas["HistoryResponse"];
export type HealthStatus = Schemas["HealthResponse"];
export type Job = Schemas["JobResponse"];
export type ContentType = Schemas["ContentTypeDto"];

/** A timestamp: a `Date` or an ISO 8601 string (without an offset it means UTC on the server). */
export type When = Date | string;

export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";

export interface AstrocyteOptions extends Partial<RetryPolicy> {
  /** Default `http://127.0.0.1:8080`. */
  baseUrl?: string;
  /** Sent as `X-Api-Key`. */
  apiKey?: string;
  /** Sent as `Authorization: Bearer` (an issued API key or a JWT). */
  bearerToken?: string;
  /** Sent as `X-Astrocyte-Principal` (dev mode). */
  principal?: string;
  /** Sent as `X-Admin-Token`, for admin routes (`banks()`) on a server that has one. */
  adminToken?: string;
  /** More headers on every request. */
  headers?: Record<string, string>;
  /** Per attempt, in ms. Default 30 000. */
  timeoutMs?: number;
  /** Called before each retry with the retry number (from 1), the wait in ms and the error. */
  onRetry?: (retry: number, delayMs: number, error: ApiError) => void;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface RetainOptions {
  tags?: string[];
  metadata?: Record<string, unknown>;
  occurredAt?: When;
  contentType?: ContentType;
  /** With `async`: a second request with the same key returns the first job. */
  idempotencyKey?: string;
  /** The conversation this content belongs to; its turns lend each other keyword context. */
  threadId?: string;
  /** Queue the retain (202): the result carries `job_id`; see `job()` and `waitForJob()`. */
  async?: boolean;
}

export interface RecallOptions {
  bankId?: string;
  banks?: string[];
  maxResults?: number;
  maxTokens?: number;
  tags?: string[];
  /** Inclusive `[start, end]` over when memories happened. */
  timeRange?: [When, When];
  asOf?: When;
}

export interface ReflectOptions {
  maxTokens?: number;
  /** Default true. */
  includeSources?: boolean;
}

export interface ForgetOptions {
  memoryIds?: string[];
  tags?: string[];
  beforeDate?: When;
  /** `"all"` forgets the whole bank. */
  scope?: string;
}

export interface HistoryOptions {
  maxResults?: number;
  maxTokens?: number;
  tags?: string[];
}

export interface WaitOptions {
  /** Default 30 000. */
  timeoutMs?: number;
  /** Default 100. */
  intervalMs?: number;
}

function iso(value: When): string {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "string") return value;
  throw new TypeError(`expected a Date or an ISO 8601 string, got ${typeof value}`);
}

/** Copies the defined entries only, so absent options are absent on the wire. */
function defined(entries: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== undefined));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Client of an Astrocyte server: `retain`, `recall`, `reflect`, `forget`, `history`, `banks`,
 * `health`, `job`. 429 and 503 answers are retried up to `maxRetries` times, waiting what the
 * server asks (`retry_after_seconds` / `Retry-After`) or an exponential backoff.
 */
export class Astrocyte {
  readonly baseUrl: string;
  readonly retry: RetryPolicy;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly onRetry?: AstrocyteOptions["onRetry"];
  private readonly fetchImpl: typeof fetch;

  constructor(options: AstrocyteOptions = {}) {
    this.baseUrl = (options.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.retry = {
      maxRetries: options.maxRetries ?? DEFAULT_RETRY_POLICY.maxRetries,
      backoffBaseMs: options.backoffBaseMs ?? DEFAULT_RETRY_POLICY.backoffBaseMs,
      backoffMaxMs: options.backoffMaxMs ?? DEFAULT_RETRY_POLICY.backoffMaxMs,
      maxRetryAfterMs: options.maxRetryAfterMs ?? DEFAULT_RETRY_POLICY.maxRetryAfterMs,
    };
    if (!(this.retry.maxRetries >= 0)) throw new RangeError("maxRetries must be >= 0");
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.onRetry = options.onRetry;
    this.fetchImpl = options.fetch ?? globalThis.fetch;
    const headers: Record<string, string> = { accept: "application/json" };
    if (options.apiKey) headers["x-api-key"] = options.apiKey;
    if (options.bearerToken) headers["authorization"] = `Bearer ${options.bearerToken}`;
    if (options.principal) headers["x-astrocyte-principal"] = options.principal;
    if (options.adminToken) headers["x-admin-token"] = options.adminToken;
    this.headers = { ...headers, ...(options.headers ?? {}) };
  }

  /** Store `content` in `bankId`. */
  retain(content: string, bankId: string, options: RetainOptions = {}): Promise<RetainResult> {
    return this.send<RetainResult>("POST", "/v1/retain", defined({
      content,
      bank_id: bankId,
      tags: options.tags,
      metadata: options.metadata,
      occurred_at: options.occurredAt === undefined ? undefined : iso(options.occurredAt),
      content_type: options.contentType,
      idempotency_key: options.idempotencyKey,
      thread_id: options.threadId,
      async: options.async ? true : undefined,
    }));
  }

  /** Memories relevant to `query`: `recall(q, "bank")`, `recall(q, "bank", {...})` or `recall(q, {banks: [...]})`. */
  recall(query: string, bankId?: string | RecallOptions, options: RecallOptions = {}): Promise<RecallResult> {
    const o: RecallOptions = typeof bankId === "object" ? { ...bankId } : { ...options, bankId: bankId ?? options.bankId };
    if (o.bankId === undefined && !(o.banks && o.banks.length)) {
      return Promise.reject(new TypeError("recall needs bankId or banks"));
    }
    return this.send<RecallResult>("POST", "/v1/recall", defined({
      query,
      bank_id: o.bankId,
      banks: o.banks,
      max_results: o.maxResults,
      max_tokens: o.maxTokens,
      tags: o.tags,
      time_range: o.timeRange === undefined ? undefined : [iso(o.timeRange[0]), iso(o.timeRange[1])],
      as_of: o.asOf === undefined ? undefined : iso(o.asOf),
    }));
  }

  /** An answer to `query` built from the bank's memories, with the memories it used as `sources`. */
  reflect(query: string, bankId: string, options: ReflectOptions = {}): Promise<ReflectResult> {
    return this.send<ReflectResult>("POST", "/v1/reflect", defined({
      query,
      bank_id: bankId,
      max_tokens: options.maxTokens,
      include_sources: options.includeSources ?? true,
    }));
  }

  /** Remove memories by id, tag, date, or all of them (`scope: "all"`). */
  forget(bankId: string, options: ForgetOptions = {}): Promise<ForgetResult> {
    return this.send<ForgetResult>("POST", "/v1/forget", defined({
      bank_id: bankId,
      memory_ids: options.memoryIds,
      tags: options.tags,
      before_date: options.beforeDate === undefined ? undefined : iso(options.beforeDate),
      scope: options.scope,
    }));
  }

  /** What the bank knew about `query` at `asOf`. */
  history(query: string, bankId: string, asOf: When, options: HistoryOptions = {}): Promise<HistoryResult> {
    return this.send<HistoryResult>("POST", "/v1/history", defined({
      query,
      bank_id: bankId,
      as_of: iso(asOf),
      max_results: options.maxResults,
      max_tokens: options.maxTokens,
      tags: options.tags,
    }));
  }

  /** The banks of the caller's tenant. */
  async banks(): Promise<string[]> {
    const answer = await this.send<Schemas["BanksResponse"]>("GET", "/v1/admin/banks");
    return answer.banks;
  }

  /** The server's health (its store reachable or not). */
  health(): Promise<HealthStatus> {
    return this.send<HealthStatus>("GET", "/health");
  }

  /** A background job, by id. */
  job(jobId: string): Promise<Job> {
    if (!jobId) return Promise.reject(new TypeError("jobId must not be empty"));
    return this.send<Job>("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
  }

  /** Polls `job()` until the job is `done` or `dead`. */
  async waitForJob(jobId: string, options: WaitOptions = {}): Promise<Job> {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      const found = await this.job(jobId);
      if (found.state === "done" || found.state === "dead") return found;
      if (Date.now() >= deadline) throw new AstrocyteError(`job ${jobId} still ${found.state}`);
      await sleep(options.intervalMs ?? 100);
    }
  }

  private async send<T>(method: "GET" | "POST", path: string, body?: Record<string, unknown>): Promise<T> {
    const url = this.baseUrl + path;
    const headers: Record<string, string> = { ...this.headers };
    if (body !== undefined) headers["content-type"] = "application/json";
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (cause) {
        throw new AstrocyteConnectionError(`${method} ${path}: ${(cause as Error)?.message ?? cause}`, { cause });
      }
      const text = await response.text();
      let decoded: unknown = text;
      if (text) {
        try {
          decoded = JSON.parse(text);
        } catch {
          decoded = text;
        }
      }
      if (response.ok) return decoded as T;
      const error = errorFor(response.status, decoded, response.headers);
      const delay = retryDelayMs(this.retry, attempt, response.status, decoded, response.headers);
      if (delay === null) throw error;
      this.onRetry?.(attempt + 1, delay, error);
      await sleep(delay);
    }
  }
}

