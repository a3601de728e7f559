/**
 * Baseline against EAGLE-3 on real prompts: for each batch size, the same prompts run through the
 * target alone and through target + draft (greedy by default), end to end, the two engines loaded
 * side by side and their timed runs alternating, so that drift of the machine (clocks, host load)
 * over the minutes of a bench falls on both alike; tokens/s, speed-up, accepted length,
 * acceptance per draft position and the phase breakdown of the rounds.
 */
import { type IterationTimesSnapshot, timesSince } from "../batch/iteration-times.js";
import { Engine, type EngineOptions } from "../engine.js";
import { type Speculation, batchBucket } from "../spec/speculation-policy.js";
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
  /** Timed runs of each engine after the warm-up (default 5): more where runs are short and spread. */
  repeats?: number;
  /**
   * Decode steps a timed run lasts about (default RUN_STEPS): that many maxTokens-long waves of
   * `batch` requests, the prompts reused in turn where there are fewer.
   */
  runSteps?: number;
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface SpecBenchRow {
  dataset: string;
  batch: number;
  requests: number;
  speculation: Speculation;
  /** The median of the baseline's timed runs. */
  baselineTokensPerSecond: number;
  /** (slowest − fastest) / median of the baseline's timed runs: how far runs of one engine spread. */
  baselineSpread: number;
  eagleTokensPerSecond: number;
  /**
   * The median over the timed runs of EAGLE-3's tokens/s over the baseline run beside it (the two
   * alternate, so a slow drift of the machine cancels), and the lowest and highest of those ratios.
   */
  speedup: number;
  speedupRange: [number, number];
  meanAcceptedLength: number;
  acceptanceByPosition: number[];
  /** Per iteration: wall and device ms of the EAGLE-3 run; phases from a separate profiled run. */
  phases: {
    iterations: number; wallMs: number; deviceMs: number; hostMs: number;
    draftMs: number; verifyMs: number; acceptMs: number; baselineStepMs: number;
  };
  /**
   * accepted length × baseline step / EAGLE-3 wall per iteration: the speed-up the rounds would
   * give if every iteration were a round; the measured speed-up as a share of it, null where rounds
   * were fewer than the run's plain decode steps (the policy decoded plainly: a share of the rounds'
   * ideal says nothing of such a run).
   */
  idealSpeedup: number;
  ofIdeal: number | null;
  /**
   * Where each engine's time went in its median timed run: count and wall ms per kind of iteration
   * (decode, mixed, prefill, round, catchUp), iterations that recorded a graph among them.
   */
  iterationTimes: { baseline: IterationTimesSnapshot; eagle: IterationTimesSnapshot };
  /** Tokens/ms the speculation policy measured per choice (plain, trees) in this batch's bucket. */
  choices?: SpeculativeStats["choices"];
}

export async function benchSpeculative(o: SpecBenchOptions): Promise<SpecBenchRow[]> {
  const rows: SpecBenchRow[] = [];
  const total = o.batches.length * 3;
  let done = 0;
  const tick = (label: string) => o.onProgress?.(++done, total, label);
  const speculation = o.engine.speculation ?? "auto";
  const waves = Math.max(1, Math.ceil((o.runSteps ?? RUN_STEPS) / o.maxTokens));
  for (const batch of o.batches) {
    const prompts = Array.from({ length: batch * waves }, (_, i) => o.prompts[i % o.prompts.length]);
    const { baseline: base, eagle, ratios } = await alternate(
      { ...o.engine, maxBatch: batch }, { ...o.engine, maxBatch: batch, draft: o.draft }, prompts, o, tick, batch,
    );
    // Phase times come from rounds timed one phase at a time, which are slower: a run of their own.
    const prof = await timedRuns({ ...o.engine, maxBatch: batch, draft: o.draft, speculation: "always", profileEvery: 1 },
      prompts.slice(0, batch), o, Math.min(o.maxTokens, 48));
    tick(`EAGLE-3 profiled, batch ${batch}`);
    const s = eagle.spec!, p = prof.spec!;
    const per = (ms: number, n: number) => round(n ? ms / n : 0, 3);
    const ideal = s.iterations ? (s.meanAcceptedLength * base.stepMs) / (s.wallMs / s.iterations) : 0;
    const speedup = ratios[ratios.length >> 1];
    const mostlyRounds = (eagle.iterations.round?.count ?? 0) >= (eagle.iterations.decode?.count ?? 0);
    rows.push({
      dataset: o.dataset, batch, requests: prompts.length, speculation,
      baselineTokensPerSecond: round(base.tokensPerSecond, 1),
      baselineSpread: round(base.spread, 3),
      eagleTokensPerSecond: round(eagle.tokensPerSecond, 1),
      speedup: round(speedup, 3), speedupRange: [round(ratios[0], 3), round(ratios.at(-1)!, 3)],
      meanAcceptedLength: round(s.meanAcceptedLength, 3),
      acceptanceByPosition: s.acceptanceByPosition.map((x) => round(x, 3)),
      idealSpeedup: round(ideal, 3),
      ofIdeal: ideal && mostlyRounds ? round(speedup / ideal, 3) : null,
      phases: {
        iterations: s.iterations, wallMs: per(s.wallMs, s.iterations), deviceMs: per(s.deviceMs, s.iterations), hostMs: per(s.hostMs, s.iterations),
        draftMs: per(p.draftMs, p.profiledIterations), verifyMs: per(p.verifyMs, p.profiledIterations), acceptMs: per(p.acceptMs, p.profiledIterations),
        baselineStepMs: round(base.stepMs, 3),
      },
      iterationTimes: { baseline: base.iterations, eagle: eagle.iterations },
      choices: s.choices?.filter((c) => Number.parseInt(c.bucket, 10) === batchBucket(batch)),
    });
  }
  return rows;
}

export const REPEATS = 5;  // timed runs of each engine by default
// Every batch size's timed runs last about this many steps: on the trained pair (run 7) runs of two
// waves (256 steps, 70-130 ms at batch 4-32) spread 7-25% between runs of one engine, runs of a
// thousand steps (batch 1) 1-2%.
export const RUN_STEPS = 1024;

type Measured = Awaited<ReturnType<typeof timedRun>>;

/**
 * The baseline and EAGLE-3 engines loaded together, the prompts run once on each as warm-up
 * (graphs, workspaces, the speculation policy's first measurements), then o.repeats timed runs of
 * each, alternating and in turn first: each engine's median run by tokens/s, with its spread, and
 * the sorted ratios of each EAGLE-3 run to the baseline run of the same turn.
 */
async function alternate(baseOptions: EngineOptions, eagleOptions: EngineOptions, prompts: string[], o: SpecBenchOptions,
  tick: (label: string) => void, batch: number) {
  await using baseline = await Engine.load(baseOptions);
  await using eagle = await Engine.load(eagleOptions);
  const inputs = encodeAll(baseline, prompts);
  await timedRun(baseline, inputs, o, o.maxTokens);
  await timedRun(eagle, inputs, o, o.maxTokens);
  tick(`warm-up, batch ${batch}`);
  const runs: { baseline: Measured[]; eagle: Measured[] } = { baseline: [], eagle: [] };
  for (let r = 0; r < (o.repeats ?? REPEATS); r++) {
    const order = r % 2 ? (["eagle", "baseline"] as const) : (["baseline", "eagle"] as const);
    for (const which of order) runs[which].push(await timedRun(which === "eagle" ? eagle : baseline, inputs, o, o.maxTokens));
  }
  tick(`baseline and EAGLE-3 in turn, batch ${batch}`);
  const ratios = runs.eagle.map((e, r) => e.tokensPerSecond / runs.baseline[r].tokensPerSecond).sort((x, y) => x - y);
  return { baseline: median(runs.baseline), eagle: median(runs.eagle), ratios };
}

/** One engine of its own, warmed up, then the median of o.repeats timed runs. */
async function timedRuns(options: EngineOptions, prompts: string[], o: SpecBenchOptions, maxTokens: number) {
  await using engine = await Engine.load(options);
  const inputs = encodeAll(engine, prompts);
  await timedRun(engine, inputs, o, maxTokens);
  const runs: Measured[] = [];
  for (let r = 0; r < (o.repeats ?? REPEATS); r++) runs.push(await timedRun(engine, inputs, o, maxTokens));
  return median(runs);
}

function median(runs: Measured[]) {
  const sorted = [...runs].sort((a, b) => a.tokensPerSecond - b.tokensPerSecond), mid = sorted[sorted.length >> 1];
  return { ...mid, spread: (sorted.at(-1)!.tokensPerSecond - sorted[0].tokensPerSecond) / mid.tokensPerSecond };
}

/**
 * The prompts as chat turns, encoded once before any run: encoding is the same work for both
 * engines and none of it decoding, yet 256 HumanEval prompts took 75-280 ms on a CI-like host,
 * varying from one pass to the next, which inside a timed run of 0.3-0.5 s blurs the ratio.
 */
function encodeAll(engine: Engine, prompts: string[]): number[][] {
  return prompts.map((p) => engine.encode([{ role: "user", content: p }]));
}

/** The encoded prompts, all submitted at once, through `engine`: tokens/s, step time and counters of that run. */
async function timedRun(engine: Engine, prompts: number[][], o: SpecBenchOptions, maxTokens: number) {
  const before = engine.stats();
  const t0 = performance.now();
  const results = await Promise.all(
    prompts.map((tokens, i) => engine.complete({ tokens }, { maxTokens, temperature: o.temperature, seed: i + 1 })),
  );
  const seconds = (performance.now() - t0) / 1000;
  const after = engine.stats();
  const tokens = results.reduce((n, x) => n + x.tokens.length, 0);
  const steps = after.steps - before.steps;
  return {
    tokensPerSecond: tokens / seconds,
    stepMs: steps ? (1000 * (after.stepSeconds - before.stepSeconds)) / steps : 0,
    iterations: timesSince(before.iterations, after.iterations),
    spec: after.speculative && statsSince(before.speculative, after.speculative),
  };
}
