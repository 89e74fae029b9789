// Compiled (not run) by `npm test`: the public types are usable as a TypeScript user writes them.
import { Astrocyte, RateLimitedError, type MemoryHit, type RecallResult, type RetainResult } from "../dist/index.js";

export async function typed(brain: Astrocyte): Promise<string[]> {
  const stored: RetainResult = await brain.retain("text", "bank", { tags: ["t"], metadata: { n: 1 }, occurredAt: new Date() });
  const found: RecallResult = await brain.recall("q", "bank", { maxResults: 3, timeRange: ["2024-01-01", new Date()] });
  const multi = await brain.recall("q", { banks: ["a", "b"] });
  const hit: MemoryHit | undefined = found.hits[0];
  const owner: unknown = hit?.metadata?.["owner"];
  const when: string | null | undefined = hit?.occurred_at;
  const answer: string = (await brain.reflect("q", "bank", { includeSources: false })).answer;
  const deleted: number = (await brain.forget("bank", { memoryIds: [stored.memory_id ?? ""] })).deleted_count;
  const asOf: string = (await brain.history("q", "bank", new Date(), { maxTokens: 100 })).as_of;
  const healthy: boolean = (await brain.health()).healthy;
  const state: string = (await brain.job("id")).state;
  try {
    await brain.banks();
  } catch (error) {
    if (error instanceof RateLimitedError) {
      const wait: number | null = error.retryAfterSeconds;
      void wait;
    }
  }
  void [owner, when, answer, deleted, asOf, healthy, state, multi];
  return brain.banks();
}
