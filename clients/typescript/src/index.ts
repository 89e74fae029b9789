/** @astrocyte/client: a fetch-based client for the Astrocyte memory server's REST API. */
export * from "./client.js";
export * from "./errors.js";
export { DEFAULT_RETRY_POLICY, parseRetryAfterHeader, retryDelayMs, type RetryPolicy } from "./retry.js";
export type { components, paths, operations } from "./schema.js";
