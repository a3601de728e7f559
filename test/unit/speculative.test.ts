/**
 * EAGLE-3 on the CPU reference path: the draft against an independent PyTorch implementation
 * (top-16 after the prompt, greedy chain), lossless greedy decoding for several tree shapes and
 * both checkpoint formats, also when rounds follow pipelined plain steps, and sampled output
 * following the target's distribution.
 */
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { describe, expect, it, vi } from "vitest";
import { Engine } from "../../lib/engine.js";
import { PageAllocator } from "../../lib/batch/page-allocator.js";
import { GREEDY, Sequence } from "../../lib/batch/sequence.js";
import { buildSpecPrefill, buildStep, packSampling } from "../../lib/batch/step-plan.js";
import { readTargetConfig } from "../../lib/model/config.js";
import { openDraft } from "../../lib/model/draft.js";
import { TargetModel } from "../../lib/model/target.js";
import { type Choice, SpeculationPolicy } from "../../lib/spec/speculation-policy.js";
import { TreePolicy } from "../../lib/spec/tree-policy.js";
import { runCatchUp } from "../helpers/catch-up.js";
import { FIXTURES, readGolden } from "../helpers/golden.js";

const target = join(FIXTURES, "qwen3-tiny");
const drafts = ["eagle3-qwen3-tiny", "eagle3-qwen3-tiny-bin"].map((d) => join(FIXTURES, d));
const readGoldenIds = () => (JSON.parse(readFileSync(join(target, "golden.json"), "utf8")) as { prompts: Array<{ ids: number[] }> }).prompts[0].ids;

interface DraftGolden {
  prompts: Array<{ ids: number[]; root: number; top_probs: number[]; top_ids: number[]; chain: number[] }>;
  chain: number;
}

describe("EAGLE-3 draft against the PyTorch reference", () => {
  it.each(drafts)("%s: top-16 after the prompt and the greedy chain after it", async (dir) => {
    const g: DraftGolden = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8"));
    const { config } = await readTargetConfig(target);
    const draft = await openDraft(dir, config, 1);
    const model = await TargetModel.load(target, { device: "cpu", maxStepTokens: 128, numPages: 16, pageSize: 16 }, config, draft);
    try {
      for (const p of g.prompts) {
        const seq = new Sequence(0, p.ids.length, p.ids, 64, GREEDY, new Set());
        seq.pages = new PageAllocator(16).alloc(16)!;
        seq.slot = 0;
        const step = buildStep([{ seq, count: p.ids.length, samples: true }]);
        const next = Int32Array.from(p.ids.slice(1).concat([-1]));
        const res = await model.prefillSpeculative({ ...step, slots: Int32Array.of(0), nextTokens: next, finalChunk: Uint8Array.of(1) });
        expect(res.tokens![0]).toBe(p.root);
        const cand = model.draftCandidates(0);
        expect(Array.from(cand.ids)).toEqual(p.top_ids);
        cand.probs.forEach((x, i) => expect(x).toBeCloseTo(p.top_probs[i], 4));
        const r = await model.speculativeRound({
          steps: g.chain, topk: 1, draftTokens: g.chain + 1, slots: Int32Array.of(0), committed: Int32Array.of(p.ids.length),
          roots: Int32Array.of(p.root), pageTable: Int32Array.from(seq.pages), maxPages: seq.pages.length, sampling: packSampling([seq]),
        });
        expect(Array.from(r.trees)).toEqual([p.root, ...p.chain]);
      }
    } finally {
      model.dispose();
    }
  });
});

describe("EAGLE-3 rounds refuse bad input", () => {
  it("names the slot, page, room, token, tree or hidden-state request that is wrong (ERR_INVALID_ARGUMENT)", async () => {
    const { config } = await readTargetConfig(target);
    const model = await TargetModel.load(target, { device: "cpu", maxStepTokens: 128, numPages: 16, pageSize: 16 }, config, await openDraft(drafts[0], config, 2));
    try {
      const seq = new Sequence(0, 4, [1, 2, 3, 4], 64, GREEDY, new Set());
      seq.pages = [0, 1, 2, 3];
      seq.slot = 0;
      const base = {
        steps: 3, topk: 2, draftTokens: 5, slots: Int32Array.of(0), committed: Int32Array.of(4), roots: Int32Array.of(5),
        pageTable: Int32Array.of(0, 1, 2, 3), maxPages: 4, sampling: packSampling([seq]),
      };
      const bad = (o: object, re: RegExp) =>
        expect(model.speculativeRound({ ...base, ...o })).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(re) });
      await bad({ slots: Int32Array.of(2) }, /no draft slot 2/);
      await bad({ pageTable: Int32Array.of(99, 1, 2, 3) }, /page 99 outside the pool/);
      await bad({ committed: Int32Array.of(60) }, /no room for its tree/);
      await bad({ roots: Int32Array.of(-1) }, /root token outside/);
      await bad({ steps: 2, topk: 20 }, /topk/);
      // A chained round must follow a round of the same sequences, with nothing run between.
      await bad({ chained: true }, /chained, but the previous call/);
      await model.speculativeRound(base);
      await bad({ chained: true, slots: Int32Array.of(1) }, /chained, but the previous call/);
      await model.speculativeRound({ ...base, chained: true });
      const step = buildStep([{ seq, count: 4, samples: true }]);
      await model.step(step);
      await bad({ chained: true }, /chained, but the previous call/);
      await expect(model.prefillSpeculative({ ...step, slots: Int32Array.of(0), nextTokens: Int32Array.of(2, -1, 4, -1), finalChunk: Uint8Array.of(1) }))
        .rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/-1 only at the end/) });
      // Its steps write the captured states to the draft's feature store, not to a step's output.
      await expect(model.step({ ...step, wantHidden: true }))
        .rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/keeps them for the draft/) });
    } finally {
      model.dispose();
    }
  });
});

describe("EAGLE-3 draft catch-up after plain steps", () => {
  it("from the features the plain steps kept, the draft ends where the target run again would leave it", async () => {
    const { config } = await readTargetConfig(target);
    const model = await TargetModel.load(target, { device: "cpu", maxStepTokens: 128, numPages: 16, pageSize: 4 }, config, await openDraft(drafts[0], config, 2));
    try {
      const { before, stored, rerun, seqs } = await runCatchUp(model, [11, 22, 33, 44, 55], 6, 4);
      expect(Array.from(stored.ids)).toEqual(Array.from(rerun.ids));
      stored.probs.forEach((p, i) => expect(p).toBeCloseTo(rerun.probs[i], 5));
      expect(Array.from(stored.ids)).not.toEqual(Array.from(before.ids));
      await expect(model.prefillSpeculative({ ...buildSpecPrefill([{ seq: seqs[0], count: 1, samples: true }], () => true), storedFeatures: true }))
        .rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/samples nothing/) });
    } finally {
      model.dispose();
    }
  });
});

describe("EAGLE-3 speculative decoding is lossless on the CPU", () => {
  const shapes = [
    { steps: 4, topk: 1, draftTokens: 5 },
    { steps: 3, topk: 4, draftTokens: 8 },
    { steps: 5, topk: 8, draftTokens: 32 },
  ];
  it.each(drafts.flatMap((d) => shapes.map((s) => [d, s] as const)))("%s with tree %o: greedy output equals transformers'", async (draft, tree) => {
    const g = await readGolden("qwen3-tiny");
    const rounds = vi.spyOn(TargetModel.prototype, "speculativeRound");
    await using engine = await Engine.load({ model: target, draft, tree, speculation: "always", device: "cpu", maxContext: 128, maxBatch: 4 });
    const results = await Promise.all(g.prompts.map((p) => engine.complete({ tokens: p.ids }, { maxTokens: g.newTokens })));
    results.forEach((r, i) => expect(r.tokens, `prompt ${i}`).toEqual(g.prompts[i].greedy_f32));
    const chained = rounds.mock.calls.filter(([r]) => r.chained).length;
    rounds.mockRestore();
    expect(chained, "rounds launched before the previous one's tokens were back").toBeGreaterThan(rounds.mock.calls.length / 2);
    const spec = engine.stats().speculative!;
    expect(spec.rounds).toBeGreaterThan(0);
    expect(spec.meanAcceptedLength).toBeGreaterThanOrEqual(1);
    expect(spec.draftedTokens).toBe(spec.rounds * (tree.draftTokens - 1));
    // Per request: its own rounds, which add up to the engine's.
    const mine = results.map((r) => r.speculative!);
    expect(mine.reduce((n, m) => n + m.rounds, 0)).toBe(spec.rounds);
    expect(mine.reduce((n, m) => n + m.acceptedTokens, 0)).toBe(spec.acceptedTokens);
    for (const m of mine) expect(m.draftedTokens).toBe(m.rounds * (tree.draftTokens - 1));
  });

  it("stays lossless with every other round profiled (phases timed one by one) amid chained rounds", async () => {
    const g = await readGolden("qwen3-tiny");
    const rounds = vi.spyOn(TargetModel.prototype, "speculativeRound");
    try {
      await using engine = await Engine.load({ model: target, draft: drafts[0], tree: shapes[1], speculation: "always", device: "cpu", maxContext: 128, maxBatch: 4, profileEvery: 2 });
      const results = await Promise.all(g.prompts.map((p) => engine.complete({ tokens: p.ids }, { maxTokens: g.newTokens })));
      results.forEach((r, i) => expect(r.tokens, `prompt ${i}`).toEqual(g.prompts[i].greedy_f32));
      const calls = rounds.mock.calls.map(([r]) => r);
      expect(calls.filter((r) => r.profile && r.chained).length, "profiled rounds launched chained").toBeGreaterThan(0);
      expect(engine.stats().speculative!.profiledIterations).toBeGreaterThan(0);
    } finally {
      rounds.mockRestore();
    }
  });

  it("streams the same tokens with measured trees and plain steps mixed (the draft catching up), ragged prompts batched", async () => {
    const g = await readGolden("qwen3-tiny");
    await using plain = await Engine.load({ model: target, device: "cpu", maxContext: 128, maxBatch: 4 });
    await using spec = await Engine.load({ model: target, draft: drafts[0], device: "cpu", maxContext: 128, maxBatch: 3, maxStepTokens: 16 });
    const prompts = [...g.prompts.map((p) => p.ids), [9, 8, 7, 6, 5]];
    const want = await Promise.all(prompts.map((ids) => plain.complete({ tokens: ids }, { maxTokens: 40, ignoreEos: true })));
    const got = await Promise.all(prompts.map((ids) => spec.complete({ tokens: ids }, { maxTokens: 40, ignoreEos: true })));
    expect(got.map((c) => c.tokens)).toEqual(want.map((c) => c.tokens));
    // The policy measured plain steps and at least two trees, so rounds followed plain steps.
    const tried = spec.stats().speculative!.choices!.filter((c) => c.samples > 0).map((c) => c.choice);
    expect(tried).toContain("plain");
    expect(tried.filter((c) => c.startsWith("tree")).length).toBeGreaterThanOrEqual(2);
  });
});

describe("EAGLE-3 after pipelined plain steps", () => {
  it("rounds that follow runs of pipelined plain steps (the draft catching up over their features) stream what plain decoding does", async () => {
    const g = await readGolden("qwen3-tiny");
    const prompts = [...g.prompts.map((p) => p.ids), [9, 8, 7, 6, 5]];
    await using plain = await Engine.load({ model: target, device: "cpu", maxContext: 128, maxBatch: 4 });
    const want = await Promise.all(prompts.map((ids) => plain.complete({ tokens: ids }, { maxTokens: 48, ignoreEos: true })));
    // The policy, scripted: plain steps preferred (prompts prefilled without the draft, plain runs
    // pipelined), its choices alternating between seven plain steps and seven rounds.
    const trees = new TreePolicy();
    let calls = 0;
    const choose = vi.spyOn(SpeculationPolicy.prototype, "choose").mockImplementation((batch): Choice =>
      Math.floor(calls++ / 7) % 2 ? { kind: "tree", shape: trees.shapeFor(batch) } : { kind: "plain" });
    const prefers = vi.spyOn(SpeculationPolicy.prototype, "prefersPlain").mockReturnValue(true);
    const steps = vi.spyOn(TargetModel.prototype, "step");
    const rounds = vi.spyOn(TargetModel.prototype, "speculativeRound");
    try {
      await using spec = await Engine.load({ model: target, draft: drafts[0], device: "cpu", maxContext: 128, maxBatch: 4 });
      const got = await Promise.all(prompts.map((ids) => spec.complete({ tokens: ids }, { maxTokens: 48, ignoreEos: true })));
      expect(got.map((c) => c.tokens)).toEqual(want.map((c) => c.tokens));
      const it = spec.stats().iterations;
      expect(it.round!.count).toBeGreaterThan(3);
      expect(it.catchUp!.count).toBeGreaterThan(3);
      const fed = steps.mock.calls.filter(([step]) => step.feedback !== undefined).length;
      expect(fed, "plain steps launched ahead, fed on the device").toBeGreaterThan(it.round!.count / 2);
      const chained = rounds.mock.calls.filter(([r]) => r.chained).length;
      expect(chained, "rounds launched ahead, on the lengths and roots the previous round left").toBeGreaterThan(it.round!.count / 3);
    } finally {
      choose.mockRestore();
      prefers.mockRestore();
      steps.mockRestore();
      rounds.mockRestore();
    }
  });
});

describe("EAGLE-3 sampling follows the target distribution", () => {
  it("requests submitted together share their steps, so sampled rounds draw alike for the same seed (the tree, and so the draws, depend on the batch)", async () => {
    const prompt = readGoldenIds();
    await using spec = await Engine.load({ model: target, draft: drafts[0], device: "cpu", maxContext: 64, maxBatch: 4, speculation: "always" });
    const sample = (seed: number) => spec.complete({ tokens: prompt }, { maxTokens: 12, temperature: 0.8, topP: 0.95, seed, ignoreEos: true });
    const [a, b, c] = await Promise.all([sample(5), sample(5), sample(6)]);
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    // Admitted in the same turn: one prefill step, then rounds of all three.
    expect(a.speculative!.rounds).toBe(b.speculative!.rounds);
  });
  it("the second sampled token's frequencies match the target's exact marginal (chi-square)", async () => {
    const prompt = [11, 22, 33];
    const opts = { temperature: 1.5, topK: 0, topP: 1 };
    await using spec = await Engine.load({ model: target, draft: drafts[0], device: "cpu", maxContext: 16, maxBatch: 8, maxQueued: 4096, tree: { steps: 2, topk: 4, draftTokens: 6 }, speculation: "always" });
    // Exact marginal of token 2: Σ_t1 p(t1) p(t2 | t1), from the target's logits.
    const exact = await secondTokenMarginal(prompt, opts.temperature);
    const n = 2000;
    const counts = new Map<number, number>();
    const jobs = Array.from({ length: n }, (_, s) => spec.complete({ tokens: prompt }, { ...opts, maxTokens: 2, seed: 1000 + s, ignoreEos: true }));
    for (const c of await Promise.all(jobs)) counts.set(c.tokens[1], (counts.get(c.tokens[1]) ?? 0) + 1);
    // Pool tokens with expected count < 5 into one bin, then chi-square against the exact law.
    let chi = 0, bins = 0, restExp = 0, restObs = 0;
    exact.forEach((p, t) => {
      const e = p * n, o = counts.get(t) ?? 0;
      if (e < 5) {
        restExp += e;
        restObs += o;
      } else {
        chi += (o - e) ** 2 / e;
        bins++;
      }
    });
    if (restExp > 0) {
      chi += (restObs - restExp) ** 2 / restExp;
      bins++;
    }
    // 99.9th percentile of chi-square with bins − 1 degrees of freedom (Wilson–Hilferty).
    const k = bins - 1, z = 3.09;
    const limit = k * (1 - 2 / (9 * k) + z * Math.sqrt(2 / (9 * k))) ** 3;
    expect(chi, `chi-square ${chi.toFixed(1)} over ${bins} bins (limit ${limit.toFixed(1)})`).toBeLessThan(limit);
    expect(spec.stats().speculative!.rounds).toBeGreaterThan(0);
  });
});

describe("EAGLE-3 sampling with chained rounds", () => {
  it("with rounds chained, no two rounds share uniforms, and the sixth sampled token's frequencies match plain sampling's (two-sample chi-square)", async () => {
    const prompt = [11, 22, 33];
    const opts = { temperature: 1.5, topK: 0, topP: 1, maxTokens: 16, ignoreEos: true };
    const n = 1500, at = 5;
    const rounds = vi.spyOn(TargetModel.prototype, "speculativeRound");
    const sixth = async (engine: Engine, seed0: number) => {
      const counts = new Map<number, number>();
      const jobs = Array.from({ length: n }, (_, s) => engine.complete({ tokens: prompt }, { ...opts, seed: seed0 + s }));
      for (const c of await Promise.all(jobs)) counts.set(c.tokens[at], (counts.get(c.tokens[at]) ?? 0) + 1);
      return counts;
    };
    try {
      await using plain = await Engine.load({ model: target, device: "cpu", maxContext: 16, maxBatch: 8, maxQueued: 4096 });
      await using spec = await Engine.load({ model: target, draft: drafts[0], device: "cpu", maxContext: 16, maxBatch: 8, maxQueued: 4096, tree: { steps: 2, topk: 4, draftTokens: 6 }, speculation: "always" });
      const [a, b] = [await sixth(plain, 50_000), await sixth(spec, 90_000)];
      const chained = rounds.mock.calls.filter(([r]) => r.chained).length;
      expect(chained, "rounds launched chained").toBeGreaterThan(rounds.mock.calls.length / 6);
      // No two rounds of a request draw from the same uniforms (seed, counter): a round launched
      // before the one ahead of it is back takes a counter of its own.
      const draws = new Set<string>();
      let rows = 0;
      for (const [r] of rounds.mock.calls) {
        const dv = new DataView(r.sampling.buffer, r.sampling.byteOffset, r.sampling.byteLength);
        for (let o = 0; o < r.sampling.byteLength; o += 32, rows++) draws.add(`${dv.getBigUint64(o + 16, true)}:${dv.getBigUint64(o + 24, true)}`);
      }
      expect(draws.size).toBe(rows);
      // Tokens seen fewer than 10 times in both together pooled into one bin; then Σ (a − b)² / (a + b).
      let chi = 0, bins = 0, restA = 0, restB = 0;
      for (const t of new Set([...a.keys(), ...b.keys()])) {
        const x = a.get(t) ?? 0, y = b.get(t) ?? 0;
        if (x + y < 10) {
          restA += x;
          restB += y;
        } else {
          chi += (x - y) ** 2 / (x + y);
          bins++;
        }
      }
      if (restA + restB > 0) {
        chi += (restA - restB) ** 2 / (restA + restB);
        bins++;
      }
      const k = bins - 1, z = 3.09;  // 99.9th percentile, Wilson–Hilferty
      const limit = k * (1 - 2 / (9 * k) + z * Math.sqrt(2 / (9 * k))) ** 3;
      expect(chi, `chi-square ${chi.toFixed(1)} over ${bins} bins (limit ${limit.toFixed(1)})`).toBeLessThan(limit);
    } finally {
      rounds.mockRestore();
    }
  });
});

/** Σ_t1 p(t1) p(t2 | t1) for every t2, from the target's logits (batches of 128 continuations). */
async function secondTokenMarginal(prompt: number[], temperature: number): Promise<Float64Array> {
  const batch = 128, len = prompt.length + 1;
  const model = await TargetModel.load(target, { device: "cpu", maxStepTokens: batch * len, maxLogitRows: batch, numPages: batch, pageSize: len });
  try {
    const V = model.config.vocabSize;
    const logitsOf = async (seqs: number[][]) => {
      const step = buildStep(seqs.map((ids, i) => ({ seq: seqOf(ids, i), count: ids.length, samples: false })));
      let end = 0;
      step.logitRows = Int32Array.from(seqs, (ids) => (end += ids.length) - 1);
      return (await model.step({ ...step, wantLogits: true })).logits!;
    };
    const softmax = (l: Float32Array, row: number) => {
      const x = l.subarray(row * V, (row + 1) * V);
      const mx = x.reduce((m, v) => Math.max(m, v), -Infinity);
      const p = Float64Array.from(x, (v) => Math.exp((v - mx) / temperature));
      const sum = p.reduce((a, b) => a + b, 0);
      return p.map((v) => v / sum);
    };
    const p1 = softmax(await logitsOf([prompt]), 0);
    const out = new Float64Array(V);
    for (let b = 0; b < V; b += batch) {
      const firsts = Array.from({ length: Math.min(batch, V - b) }, (_, i) => b + i);
      const l = await logitsOf(firsts.map((t1) => [...prompt, t1]));
      firsts.forEach((t1, i) => softmax(l, i).forEach((q, t2) => (out[t2] += p1[t1] * q)));
    }
    return out;
  } finally {
    model.dispose();
  }
}

function seqOf(ids: number[], page: number): Sequence {
  const s = new Sequence(page, ids.length, ids, 1, GREEDY, new Set());
  s.pages = [page];
  return s;
}
