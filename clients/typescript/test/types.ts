// Compiled (not run) by `npm test`: the public types are usable as a TypeScript user writes them.
import {
  Astrocyte, RateLimitedError, type BankSummary, type ChangesPage, type Entity, type ImportResult, type Memory,
  type MemoryDetail, type MemoryHit, type MemoryPage, type RecallResult, type RetainResult,
} from "../dist/index.js";

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
  const page: MemoryPage = await brain.listMemories("bank", { limit: 10, tags: ["t"], order: "id", start: new Date(), contains: "x" });
  for await (const memory of brain.iterMemories("bank", { factTypes: "world", cursor: page.next_cursor ?? undefined })) {
    const text: string = memory.text;
    void text;
  }
  const detail: MemoryDetail = await brain.getMemory("bank", "id");
  const updated: Memory = await brain.updateMemory("bank", detail.memory.memory_id, { tags: [], metadata: { k: "v" } });
  const forgotten: boolean = (await brain.deleteMemory("bank", updated.memory_id)).forgotten;
  const feed: ChangesPage = await brain.changes("bank", { since: "0", limit: 5 });
  const tombstone: boolean = feed.changes.some((c) => c.kind === "forgotten" && c.memory === null);
  const lines: string[] = [];
  for await (const line of brain.exportBank("bank", { includeEmbeddings: true })) lines.push(line);
  const imported: ImportResult = await brain.importBank("copy", brain.exportBank("bank"), { onConflict: "overwrite" });
  const firstRejected: number | undefined = imported.rejected?.[0]?.line;
  const summaries: BankSummary[] = await brain.bankSummaries();
  const people: Entity[] = await brain.entities("bank", { prefix: "car", kind: "person", limit: 10 });
  const mentioned: number = (people[0]?.memories ?? 0) + (people[0]?.mentions ?? 0);
  const lastSeen: string | undefined = people[0]?.last_seen;
  void [owner, when, answer, deleted, asOf, healthy, state, multi, forgotten, tombstone, firstRejected, summaries,
    mentioned, lastSeen];
  return brain.banks();
}
