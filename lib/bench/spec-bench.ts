/**
 * Baseline against EAGLE-3 on real prompts: for each batch size, the same prompts run through the
 * target alone and through target + draft (greedy by default), end to end; tokens/s, speed-up,
 * accepted length, acceptance per draft position and the phase breakdown of the rounds.
 */
import { Engine, type EngineOptions } from "../engine.js";
import type { Speculation } from "../spec/speculation-policy.js";
import { type SpeculativeStats, statsSince } from "../spec/stats.js";
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
  speculation: Speculation;
  baselineTokensPerSecond: number;
  eagleTokensPerSecond: number;
  speedup: number;
  meanAcceptedLength: number;
  acceptanceByPosition: number[];
  /** Per iteration: wall and device ms of the EAGLE-3 run; phases from a separate profiled run. */
  phases: {
    iterations: number; wallMs: number; deviceMs: number; hostMs: number;
    draftMs: number; verifyMs: number; acceptMs: number; baselineStepMs: number;
  };
  /** Tokens/ms the speculation policy measured per choice (plain, trees) in this batch's bucket. */
  choices?: SpeculativeStats["choices"];
}

export async function benchSpeculative(o: SpecBenchOptions): Promise<SpecBenchRow[]> {
  const rows: SpecBenchRow[] = [];
  const total = o.batches.length * 3;
  let done = 0;
  const tick = (label: string) => o.onProgress?.(++done, total, label);
  const speculation = o.engine.speculation ?? "auto";
  for (const batch of o.batches) {
    const prompts = o.prompts.slice(0, Math.max(batch, Math.min(o.prompts.length, 2 * batch)));
    const base = await run({ ...o.engine, maxBatch: batch }, prompts, o, o.maxTokens);
    tick(`baseline, batch ${batch}`);
    const eagle = await run({ ...o.engine, maxBatch: batch, draft: o.draft }, prompts, o, o.maxTokens);
    tick(`EAGLE-3, batch ${batch}`);
    // Phase times come from rounds timed one phase at a time, which are slower: a run of their own.
    const prof = await run({ ...o.engine, maxBatch: batch, draft: o.draft, speculation: "always", profileEvery: 1 },
      prompts.slice(0, batch), o, Math.min(o.maxTokens, 48));
    tick(`EAGLE-3 profiled, batch ${batch}`);
    const s = eagle.spec!, p = prof.spec!;
    const per = (ms: number, n: number) => round(n ? ms / n : 0, 3);
    rows.push({
      dataset: o.dataset, batch, requests: prompts.length, speculation,
      baselineTokensPerSecond: round(base.tokensPerSecond, 1), eagleTokensPerSecond: round(eagle.tokensPerSecond, 1),
      speedup: round(eagle.tokensPerSecond / base.tokensPerSecond, 3), meanAcceptedLength: round(s.meanAcceptedLength, 3),
      acceptanceByPosition: s.acceptanceByPosition.map((x) => round(x, 3)),
      phases: {
        iterations: s.iterations, wallMs: per(s.wallMs, s.iterations), deviceMs: per(s.deviceMs, s.iterations), hostMs: per(s.hostMs, s.iterations),
        draftMs: per(p.draftMs, p.profiledIterations), verifyMs: per(p.verifyMs, p.profiledIterations), acceptMs: per(p.acceptMs, p.profiledIterations),
        baselineStepMs: round(base.stepMs, 3),
      },
      choices: s.choices?.filter((c) => c.bucket.startsWith(`${bucketOf(batch)}`)),
    });
  }
  return rows;
}

function bucketOf(batch: number): number {
  let b = 1;
  while (b < batch) b *= 2;
  return b;
}

async function run(options: EngineOptions, prompts: string[], o: SpecBenchOptions, maxTokens: number) {
  await using engine = await Engine.load(options);
  // Warm-up (graphs, workspaces) outside the timing.
  await engine.complete([{ role: "user", content: prompts[0] }], { maxTokens: 8, temperature: o.temperature, seed: 1 });
  const before = engine.stats();
  const t0 = performance.now();
  const results = await Promise.all(
    prompts.map((p, i) => engine.complete([{ role: "user", content: p }], { maxTokens, temperature: o.temperature, seed: i + 1 })),
  );
  const seconds = (performance.now() - t0) / 1000;
  const after = engine.stats();
  const tokens = results.reduce((n, r) => n + r.tokens.length, 0);
  const steps = after.steps - before.steps;
  return {
    tokensPerSecond: tokens / seconds,
    stepMs: steps ? (1000 * (after.stepSeconds - before.stepSeconds)) / steps : 0,
    spec: after.speculative && statsSince(before.speculative, after.speculative),
  };
}
