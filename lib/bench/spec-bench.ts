/**
 * Baseline against EAGLE-3 on real prompts: for each batch size, the same prompts run through the
 * target alone and through target + draft (greedy by default), end to end; tokens/s, speed-up,
 * accepted length, acceptance per draft position and the phase breakdown of the rounds.
 */
import { Engine, type EngineOptions } from "../engine.js";
import type { SpeculativeStats } from "../spec/stats.js";
import { round } from "./stats.js";

export interface SpecBenchOptions {
  engine: Omit<EngineOptions, "draft" | "maxBatch">;
  draft: string;
  dataset: string;
  prompts: string[];
  batches: number[];
  maxTokens: number;
  temperature: number;
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface SpecBenchRow {
  dataset: string;
  batch: number;
  requests: number;
  baselineTokensPerSecond: number;
  eagleTokensPerSecond: number;
  speedup: number;
  meanAcceptedLength: number;
  acceptanceByPosition: number[];
  phases: { draftMs: number; verifyMs: number; acceptMs: number; hostMs: number; rounds: number };
}

export async function benchSpeculative(o: SpecBenchOptions): Promise<SpecBenchRow[]> {
  const rows: SpecBenchRow[] = [];
  const total = o.batches.length * 2;
  let done = 0;
  const tick = (label: string) => o.onProgress?.(++done, total, label);
  for (const batch of o.batches) {
    const prompts = o.prompts.slice(0, Math.max(batch, Math.min(o.prompts.length, 2 * batch)));
    const base = await run({ ...o.engine, maxBatch: batch }, prompts, o);
    tick(`baseline, batch ${batch}`);
    const eagle = await run({ ...o.engine, maxBatch: batch, draft: o.draft }, prompts, o);
    tick(`EAGLE-3, batch ${batch}`);
    const s = eagle.spec!;
    rows.push({
      dataset: o.dataset, batch, requests: prompts.length,
      baselineTokensPerSecond: round(base.tokensPerSecond, 1), eagleTokensPerSecond: round(eagle.tokensPerSecond, 1),
      speedup: round(eagle.tokensPerSecond / base.tokensPerSecond, 3), meanAcceptedLength: round(s.meanAcceptedLength, 3),
      acceptanceByPosition: s.acceptanceByPosition.map((x) => round(x, 3)),
      phases: { draftMs: round(s.draftMs, 1), verifyMs: round(s.verifyMs, 1), acceptMs: round(s.acceptMs, 1), hostMs: round(s.hostMs, 1), rounds: s.rounds },
    });
  }
  return rows;
}

async function run(options: EngineOptions, prompts: string[], o: SpecBenchOptions) {
  await using engine = await Engine.load(options);
  // Warm-up (graphs, workspaces) outside the timing.
  await engine.complete([{ role: "user", content: prompts[0] }], { maxTokens: 8, temperature: o.temperature, seed: 1 });
  const before = engine.stats().speculative;
  const t0 = performance.now();
  const results = await Promise.all(
    prompts.map((p, i) => engine.complete([{ role: "user", content: p }], { maxTokens: o.maxTokens, temperature: o.temperature, seed: i + 1 })),
  );
  const seconds = (performance.now() - t0) / 1000;
  const tokens = results.reduce((n, r) => n + r.tokens.length, 0);
  return { tokensPerSecond: tokens / seconds, spec: since(before, engine.stats().speculative) };
}

/** Counters of the timed part only (the warm-up's subtracted). */
function since(a: SpeculativeStats | undefined, b: SpeculativeStats | undefined): SpeculativeStats | undefined {
  if (!a || !b) return b;
  const rounds = b.rounds - a.rounds;
  const committed = b.meanAcceptedLength * b.rounds - a.meanAcceptedLength * a.rounds;
  return {
    rounds,
    meanAcceptedLength: rounds ? committed / rounds : 0,
    draftedTokens: b.draftedTokens - a.draftedTokens,
    acceptedTokens: b.acceptedTokens - a.acceptedTokens,
    acceptanceByPosition: b.acceptanceByPosition.map((x, i) => (rounds ? (x * b.rounds - (a.acceptanceByPosition[i] ?? 0) * a.rounds) / rounds : 0)),
    draftMs: b.draftMs - a.draftMs, verifyMs: b.verifyMs - a.verifyMs, acceptMs: b.acceptMs - a.acceptMs, hostMs: b.hostMs - a.hostMs,
  };
}
