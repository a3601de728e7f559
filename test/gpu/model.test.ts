/**
 * The CUDA forward against transformers' bf16 run: the committed fixtures, and (where the GPU
 * machine made it, E3_QWEN3_4B_DIR) a random model of the real Qwen3-4B shape cut to a few layers.
 * Logits within bf16 tolerance; greedy continuations equal, or diverging only at a bf16 near-tie,
 * which the test checks on our own logits at the divergence point.
 */
import { describe, expect, it } from "vitest";
import { Engine } from "../../lib/engine.js";
import { TargetModel } from "../../lib/model/target.js";
import { type Golden, maxRelDiff, readGolden } from "../helpers/golden.js";
import { hasCuda } from "../helpers/tensors.js";
import { expectSameOrNearTie, lastLogits } from "../helpers/divergence.js";

const LOGIT_TOL = 3e-2;      // two bf16 forwards of the same weights, different kernels

const models = ["qwen3-tiny", "qwen2-tiny", "qwen3-vocab", ...(process.env.E3_QWEN3_4B_DIR ? [process.env.E3_QWEN3_4B_DIR] : [])];
const title = hasCuda ? "CUDA forward against transformers bf16" : "CUDA forward (skipped: no CUDA device)";

describe.skipIf(!hasCuda)(title, () => {
  it.each(models)("%s: last-position logits of every prompt", async (name) => {
    const g = await readGolden(name);
    const model = await load(g);
    try {
      const V = model.config.vocabSize;
      for (const [i, p] of g.prompts.entries()) {
        const logits = await lastLogits(model, p.ids);
        const want = g.tensor(`p${i}.bf16.logits`).data;
        const err = maxRelDiff(logits, want.subarray(want.length - V));
        expect(err, `prompt ${i}: max relative difference ${err}`).toBeLessThan(LOGIT_TOL);
      }
    } finally {
      model.dispose();
    }
  });

  it.each(models)("%s: greedy continuations through the engine", async (name) => {
    const g = await readGolden(name);
    await using engine = await Engine.load({ model: g.dir, device: "cuda", maxContext: 512, maxBatch: 4 });
    const results = await Promise.all(g.prompts.map((p) => engine.complete({ tokens: p.ids }, { maxTokens: g.newTokens })));
    const model = await load(g);
    try {
      for (const [i, p] of g.prompts.entries())
        await expectSameOrNearTie(model, p.ids, results[i].tokens, p.greedy_bf16, LOGIT_TOL, `${name} prompt ${i}`);
    } finally {
      model.dispose();
    }
  });
});

async function load(g: Golden): Promise<TargetModel> {
  return TargetModel.load(g.dir, { device: "cuda", maxStepTokens: 512, numPages: 64, pageSize: 16 });
}
