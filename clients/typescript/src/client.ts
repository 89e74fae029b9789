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
/** A stored memory as the browse routes show it. */
export type Memory = Schemas["MemoryDto"];
export type MemoryPage = Schemas["MemoryPageResponse"];
export type MemoryDetail = Schemas["MemoryDetailResponse"];
/** An entry of a memory's `history` (`created`, `updated`, `forgotten`). */
export type MemoryHistoryEntry = Schemas["ChangeDto"];
/** An entry of the change feed, with the memory as it is now (null once it is forgotten). */
export type MemoryChange = Schemas["ChangeEntryDto"];
export type ChangesPage = Schemas["ChangesResponse"];
/** A person, place, organization, product or other name a bank's memories mention, with its counts. */
export type Entity = Schemas["EntityDto"];
/** What `entities()` can select by: the kinds the server knows. */
export type EntityKind = "person" | "place" | "organization" | "product" | "other";
export type DeleteMemoryResult = Schemas["ForgottenResponse"];
export type BankSummary = Schemas["BankSummaryDto"];
export type ImportResult = Schemas["ImportResponse"];
export type RejectedLine = Schemas["RejectedLineDto"];
export type OnConflict = Schemas["OnConflictDto"];

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
  /** Sent as `X-Admin-Token`, for admin routes (`exportBank()`, `importBank()`) on a server that has one. */
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

export interface ListMemoriesOptions {
  /** Page size, 1 to 1000 (server default 50). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string;
  /** `"newest"` (default) or `"id"`. */
  order?: "newest" | "id";
  /** Memories with any of these tags. */
  tags?: string[] | string;
  factTypes?: string[] | string;
  /** Bounds (inclusive) on when memories happened. */
  start?: When;
  end?: When;
  /** The text starts with this (ignoring case). */
  textPrefix?: string;
  /** The text contains this (ignoring case). */
  contains?: string;
}

export interface UpdateMemoryOptions {
  /** Replaces the memory's tags. */
  tags?: string[];
  /** Replaces the memory's metadata (flat: string, number, boolean or null values). */
  metadata?: Record<string, unknown>;
}

export interface ChangesOptions {
  /** `next_cursor` of the previous read; from the start when absent. */
  since?: string;
  /** Entries per page, 1 to 1000 (server default 100). */
  limit?: number;
}

export interface EntitiesOptions {
  /** Only entities whose key (the lower-case name) starts with this. */
  prefix?: string;
  /** Only this kind; any other value is a `BadRequestError` (400). */
  kind?: EntityKind;
  /** At most this many, 1 to 1000 (server default 100). */
  limit?: number;
}

export interface ExportOptions {
  /** Include the vectors. Default false. */
  includeEmbeddings?: boolean;
}

export interface ImportOptions {
  /** What to do with ids that exist: `"skip"` (default) or `"overwrite"`. */
  onConflict?: OnConflict;
}

/** JSON Lines for `importBank()`: text, bytes, or lines (such as `exportBank()`'s). */
export type ImportData = string | Uint8Array | Iterable<string> | AsyncIterable<string>;

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

type Method = "GET" | "POST" | "PATCH" | "DELETE";
type Query = Record<string, string | number | boolean | undefined>;

interface SendOptions {
  query?: Query;
  /** A JSON body. */
  json?: Record<string, unknown>;
  /** A raw body with its content type. */
  raw?: { body: string; contentType: string };
  accept?: string;
  /** Hand back the successful response with its body unread (the timeout then stops at the headers). */
  stream?: boolean;
}

function segment(name: string, value: string): string {
  if (typeof value !== "string" || value === "") throw new TypeError(`${name} must not be empty`);
  return encodeURIComponent(value);
}

function bankPath(bankId: string, ...rest: string[]): string {
  return ["/v1/banks", segment("bankId", bankId), ...rest].join("/");
}

function words(value: string[] | string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return typeof value === "string" ? value : value.join(",");
}

function listQuery(options: ListMemoriesOptions): Query {
  return {
    limit: options.limit,
    cursor: options.cursor,
    order: options.order,
    tags: words(options.tags),
    fact_type: words(options.factTypes),
    start: options.start === undefined ? undefined : iso(options.start),
    end: options.end === undefined ? undefined : iso(options.end),
    text_prefix: options.textPrefix,
    contains: options.contains,
  };
}

/** The whole JSON Lines text of `importBank()`'s data (kept whole so that a retry can resend it). */
async function jsonlText(data: ImportData): Promise<string> {
  if (typeof data === "string") return data;
  if (data instanceof Uint8Array) return new TextDecoder().decode(data);
  const lines: string[] = [];
  const add = (line: string) => lines.push(line.endsWith("\n") ? line : line + "\n");
  if (Symbol.asyncIterator in data) {
    for await (const line of data as AsyncIterable<string>) add(line);
  } else {
    for (const line of data as Iterable<string>) add(line);
  }
  return lines.join("");
}

/**
 * Client of an Astrocyte server: `retain`, `recall`, `reflect`, `forget`, `history`, `banks`,
 * `health`, `job`, and a bank's browse/manage routes: `bankSummaries`, `listMemories`,
 * `iterMemories`, `getMemory`, `updateMemory`, `deleteMemory`, `changes`, `entities`,
 * `exportBank`, `importBank`. 429 and 503 answers are retried up to `maxRetries` times, waiting
 * what the server asks (`retry_after_seconds` / `Retry-After`) or an exponential backoff.
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
    return this.send<RetainResult>("POST", "/v1/retain", { json: defined({
      content,
      bank_id: bankId,
      tags: options.tags,
      metadata: options.metadata,
      occurred_at: options.occurredAt === undefined ? undefined : iso(options.occurredAt),
      content_type: options.contentType,
      idempotency_key: options.idempotencyKey,
      thread_id: options.threadId,
      async: options.async ? true : undefined,
    }) });
  }

  /** Memories relevant to `query`: `recall(q, "bank")`, `recall(q, "bank", {...})` or `recall(q, {banks: [...]})`. */
  recall(query: string, bankId?: string | RecallOptions, options: RecallOptions = {}): Promise<RecallResult> {
    const o: RecallOptions = typeof bankId === "object" ? { ...bankId } : { ...options, bankId: bankId ?? options.bankId };
    if (o.bankId === undefined && !(o.banks && o.banks.length)) {
      return Promise.reject(new TypeError("recall needs bankId or banks"));
    }
    return this.send<RecallResult>("POST", "/v1/recall", { json: defined({
      query,
      bank_id: o.bankId,
      banks: o.banks,
      max_results: o.maxResults,
      max_tokens: o.maxTokens,
      tags: o.tags,
      time_range: o.timeRange === undefined ? undefined : [iso(o.timeRange[0]), iso(o.timeRange[1])],
      as_of: o.asOf === undefined ? undefined : iso(o.asOf),
    }) });
  }

  /** An answer to `query` built from the bank's memories, with the memories it used as `sources`. */
  reflect(query: string, bankId: string, options: ReflectOptions = {}): Promise<ReflectResult> {
    return this.send<ReflectResult>("POST", "/v1/reflect", { json: defined({
      query,
      bank_id: bankId,
      max_tokens: options.maxTokens,
      include_sources: options.includeSources ?? true,
    }) });
  }

  /** Remove memories by id, tag, date, or all of them (`scope: "all"`). */
  forget(bankId: string, options: ForgetOptions = {}): Promise<ForgetResult> {
    return this.send<ForgetResult>("POST", "/v1/forget", { json: defined({
      bank_id: bankId,
      memory_ids: options.memoryIds,
      tags: options.tags,
      before_date: options.beforeDate === undefined ? undefined : iso(options.beforeDate),
      scope: options.scope,
    }) });
  }

  /** What the bank knew about `query` at `asOf`. */
  history(query: string, bankId: string, asOf: When, options: HistoryOptions = {}): Promise<HistoryResult> {
    return this.send<HistoryResult>("POST", "/v1/history", { json: defined({
      query,
      bank_id: bankId,
      as_of: iso(asOf),
      max_results: options.maxResults,
      max_tokens: options.maxTokens,
      tags: options.tags,
    }) });
  }

  /** The names of the banks the caller may read (`GET /v1/banks`; no admin token needed). */
  async banks(): Promise<string[]> {
    return (await this.bankSummaries()).map((bank) => bank.bank_id);
  }

  /** The banks the caller may read, with their memory counts and newest retain. */
  async bankSummaries(): Promise<BankSummary[]> {
    const answer = await this.send<Schemas["BankSummariesResponse"]>("GET", "/v1/banks");
    return answer.banks;
  }

  /**
   * One page of a bank's memories, newest first (`order: "id"`: by id); pass the page's
   * `next_cursor` as `cursor` for the next one.
   */
  async listMemories(bankId: string, options: ListMemoriesOptions = {}): Promise<MemoryPage> {
    return this.send<MemoryPage>("GET", bankPath(bankId, "memories"), { query: listQuery(options) });
  }

  /** Every memory `listMemories()` selects, following the cursors (`limit` is the page size). */
  async *iterMemories(bankId: string, options: ListMemoriesOptions = {}): AsyncGenerator<Memory, void, undefined> {
    let cursor = options.cursor;
    for (;;) {
      const page = await this.listMemories(bankId, { ...options, cursor });
      yield* page.memories;
      if (!page.next_cursor || page.memories.length === 0) return;
      cursor = page.next_cursor;
    }
  }

  /** One memory with its retain's chunks and its change history; `NotFoundError` when absent. */
  async getMemory(bankId: string, memoryId: string): Promise<MemoryDetail> {
    return this.send<MemoryDetail>("GET", bankPath(bankId, "memories", segment("memoryId", memoryId)));
  }

  /** Replaces a memory's tags and/or metadata (each one given replaces the stored one). */
  async updateMemory(bankId: string, memoryId: string, options: UpdateMemoryOptions): Promise<Memory> {
    return this.send<Memory>("PATCH", bankPath(bankId, "memories", segment("memoryId", memoryId)), {
      json: defined({ tags: options.tags, metadata: options.metadata }),
    });
  }

  /** Forgets one memory; `NotFoundError` when it is not there. */
  async deleteMemory(bankId: string, memoryId: string): Promise<DeleteMemoryResult> {
    return this.send<DeleteMemoryResult>("DELETE", bankPath(bankId, "memories", segment("memoryId", memoryId)));
  }

  /**
   * The bank's change feed after `since` (from the start when absent), oldest first: created,
   * updated and forgotten entries; a forgotten memory's entries carry `memory: null`.
   */
  async changes(bankId: string, options: ChangesOptions = {}): Promise<ChangesPage> {
    return this.send<ChangesPage>("GET", bankPath(bankId, "changes"), {
      query: { since: options.since, limit: options.limit },
    });
  }

  /**
   * The bank's entities (people, places, organizations, products, other), counted over its
   * visible memories, most memories first (ties by key): optionally only keys starting with
   * `prefix`, only one `kind`, at most `limit`.
   */
  async entities(bankId: string, options: EntitiesOptions = {}): Promise<Entity[]> {
    const answer = await this.send<Schemas["EntitiesResponse"]>("GET", bankPath(bankId, "entities"), {
      query: { prefix: options.prefix, kind: options.kind, limit: options.limit },
    });
    return answer.entities;
  }

  /**
   * The bank as AMA v1 JSON Lines (a header line, then a memory a line), streamed: lines are
   * yielded (without their newline) as they arrive. An admin route: on a server with an admin
   * token it needs `adminToken`.
   */
  async *exportBank(bankId: string, options: ExportOptions = {}): AsyncGenerator<string, void, undefined> {
    const path = bankPath(bankId, "export");
    const response = await this.send<Response>("GET", path, {
      query: { include_embeddings: options.includeEmbeddings ? true : undefined },
      accept: "application/x-ndjson, application/json",
      stream: true,
    });
    if (!response.body) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<string>;
        try {
          chunk = await reader.read();
        } catch (cause) {
          throw new AstrocyteConnectionError(`GET ${path}: ${(cause as Error)?.message ?? cause}`, { cause });
        }
        if (chunk.done) break;
        buffered += chunk.value;
        for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
          const line = buffered.slice(0, newline).replace(/\r$/, "");
          buffered = buffered.slice(newline + 1);
          if (line) yield line;
        }
      }
      const last = buffered.replace(/\r$/, "");
      if (last) yield last;
    } finally {
      // Stops the download when the caller leaves the loop early.
      await reader.cancel().catch(() => undefined);
    }
  }

  /**
   * Imports AMA v1 JSON Lines (text, bytes, or lines such as `exportBank()`'s) into `bankId`; ids
   * that exist are skipped or, with `onConflict: "overwrite"`, replaced. Refused lines are counted
   * in `errors` and listed in `rejected` by line number (the header is line 1). An admin route.
   */
  async importBank(bankId: string, data: ImportData, options: ImportOptions = {}): Promise<ImportResult> {
    const path = bankPath(bankId, "import");
    return this.send<ImportResult>("POST", path, {
      query: { on_conflict: options.onConflict ?? "skip" },
      raw: { body: await jsonlText(data), contentType: "application/x-ndjson" },
    });
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

  private async send<T>(method: Method, path: string, options: SendOptions = {}): Promise<T> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) params.set(key, String(value));
    }
    const query = params.toString();
    const url = this.baseUrl + path + (query ? `?${query}` : "");
    const headers: Record<string, string> = { ...this.headers };
    let body: string | undefined;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    } else if (options.raw !== undefined) {
      headers["content-type"] = options.raw.contentType;
      body = options.raw.body;
    }
    if (options.accept) headers["accept"] = options.accept;
    for (let attempt = 0; ; attempt++) {
      // Bounds the attempt up to its whole answer (or, streaming, up to the answer's headers).
      const controller = new AbortController();
      const timer = setTimeout(
        () => controller.abort(new DOMException(`no answer within ${this.timeoutMs} ms`, "TimeoutError")),
        this.timeoutMs);
      let response: Response;
      let text: string;
      try {
        response = await this.fetchImpl(url, { method, headers, body, signal: controller.signal });
        if (response.ok && options.stream) return response as T;
        text = await response.text();
      } catch (cause) {
        throw new AstrocyteConnectionError(`${method} ${path}: ${(cause as Error)?.message ?? cause}`, { cause });
      } finally {
        clearTimeout(timer);
      }
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
