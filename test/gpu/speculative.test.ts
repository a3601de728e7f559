/**
 * EAGLE-3 on the GPU: greedy output with the draft equals greedy output without it (both on the
 * GPU), for several trees and batch sizes; the draft's distribution after a prompt agrees with the
 * independent PyTorch reference within bf16 tolerance.
 */
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Engine } from "../../lib/engine.js";
import { FIXTURES, readGolden } from "../helpers/golden.js";
import { hasCuda } from "../helpers/tensors.js";
import { expectSameOrNearTie } from "../helpers/divergence.js";
import { runCatchUp } from "../helpers/catch-up.js";
import { readTargetConfig } from "../../lib/model/config.js";
import { openDraft } from "../../lib/model/draft.js";
import { TargetModel } from "../../lib/model/target.js";

const target = join(FIXTURES, "qwen3-tiny");
const draft = join(FIXTURES, "eagle3-qwen3-tiny");
const title = hasCuda ? "EAGLE-3 on CUDA" : "EAGLE-3 on CUDA (skipped: no CUDA device)";

describe.skipIf(!hasCuda)(title, () => {
  it.each([
    { steps: 4, topk: 1, draftTokens: 5 },
    { steps: 3, topk: 4, draftTokens: 8 },
    { steps: 6, topk: 8, draftTokens: 48 },
  ])("greedy with the draft equals greedy without, tree %o", async (tree) => {
    const g = await readGolden("qwen3-tiny");
    const prompts = [...g.prompts.map((p) => p.ids), [9, 8, 7, 6, 5], [3]];
    await using plain = await Engine.load({ model: target, device: "cuda", maxContext: 256, maxBatch: 8 });
    await using spec = await Engine.load({ model: target, draft, tree, speculation: "always", device: "cuda", maxContext: 256, maxBatch: 8 });
    const want = await Promise.all(prompts.map((ids) => plain.complete({ tokens: ids }, { maxTokens: 48, ignoreEos: true })));
    const got = await Promise.all(prompts.map((ids) => spec.complete({ tokens: ids }, { maxTokens: 48, ignoreEos: true })));
    // Verification runs other kernels than single-token decode, so bf16 rounding may flip a near-tie.
    for (const [i, ids] of prompts.entries())
      await expectSameOrNearTie(plain.target, ids, got[i].tokens, want[i].tokens, 3e-2, `prompt ${i}`);
    const s = spec.stats().speculative!;
    console.log(`tree ${JSON.stringify(tree)}: ${s.rounds} rounds, mean accepted length ${s.meanAcceptedLength.toFixed(2)}`);
  });

  it("sampled rounds (replayed graphs) are reproducible per seed, and greedy requests batched with them stay greedy", async () => {
    const g = await readGolden("qwen3-tiny");
    const ids = g.prompts[0].ids;
    await using plain = await Engine.load({ model: target, device: "cuda", maxContext: 256, maxBatch: 4 });
    await using spec = await Engine.load({ model: target, draft, speculation: "always", device: "cuda", maxContext: 256, maxBatch: 4 });
    const want = await plain.complete({ tokens: ids }, { maxTokens: 40, ignoreEos: true });
    const sample = (seed: number) => spec.complete({ tokens: ids }, { maxTokens: 40, temperature: 0.8, topP: 0.95, seed, ignoreEos: true });
    const [a, greedy, b, c] = await Promise.all([sample(5), spec.complete({ tokens: ids }, { maxTokens: 40, ignoreEos: true }), sample(5), sample(6)]);
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    await expectSameOrNearTie(plain.target, ids, greedy.tokens, want.tokens, 3e-2, "greedy beside sampled");
    expect(spec.stats().speculative!.rounds).toBeGreaterThan(0);
  });

  it("the draft catching up from the features plain steps kept (decode graphs) agrees with the target run again", async () => {
    const { config } = await readTargetConfig(target);
    const model = await TargetModel.load(target, { device: "cuda", maxStepTokens: 128, numPages: 16, pageSize: 4 }, config, await openDraft(draft, config, 2));
    try {
      const { before, stored, rerun } = await runCatchUp(model, [11, 22, 33, 44, 55], 6, 4);
      // bf16: decode-graph GEMVs against a prefill GEMM; the same leader, probabilities within tolerance.
      expect(stored.ids[0]).toBe(rerun.ids[0]);
      for (let i = 0; i < 4; i++) {
        const j = Array.from(rerun.ids).indexOf(stored.ids[i]);
        expect(j, `rank ${i}`).toBeGreaterThanOrEqual(0);
        expect(Math.abs(stored.probs[i] - rerun.probs[j])).toBeLessThan(0.02);
      }
      expect(Array.from(stored.ids)).not.toEqual(Array.from(before.ids));
    } finally {
      model.dispose();
    }
  });

  it("the draft's top candidates after a prompt match the PyTorch reference", async () => {
    const golden = JSON.parse(readFileSync(join(draft, "golden.json"), "utf8"));
    await using spec = await Engine.load({ model: target, draft, tree: { steps: 4, topk: 1, draftTokens: 5 }, device: "cuda", maxContext: 256, maxBatch: 1 });
    for (const p of golden.prompts) {
      await spec.complete({ tokens: p.ids }, { maxTokens: 1, ignoreEos: true });
      const cand = spec.target.draftCandidates(0);
      // bf16 against fp32: the same leader, and the reference's top probabilities within tolerance.
      expect(cand.ids[0]).toBe(p.top_ids[0]);
      for (let i = 0; i < 4; i++) {
        const j = Array.from(cand.ids).indexOf(p.top_ids[i]);
        expect(j, `reference rank ${i}`).toBeGreaterThanOrEqual(0);
        expect(Math.abs(cand.probs[j] - p.top_probs[i])).toBeLessThan(0.03);
      }
    }
  });
});
