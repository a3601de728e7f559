/**
 * The CUDA forward against transformers' bf16 run: the committed fixtures, and (where the GPU
 * machine made it, E3_QWEN3_4B_DIR) a random model of the real Qwen3-4B shape cut to a few layers.
 * Logits within bf16 tolerance; greedy continuations equal, or diverging only at a bf16 near-tie,
 * which the test checks on our own logits at the divergence point.
 */
import { describe, expect, it } from "vitest";
import { Engine } from "../../lib/engine.js";
import { buildStep } from "../../lib/batch/step-plan.js";
import { GREEDY, Sequence } from "../../lib/batch/sequence.js";
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

describe.skipIf(!hasCuda)("CUDA decode steps fed on the device", () => {
  // The same kernels either way (the fed graph gathers its tokens first): identical draws.
  it("equal steps given their tokens, replayed from graphs, at batch 1 and 3", async () => {
    const g = await readGolden("qwen3-tiny");
    for (const batch of [1, 3]) {
      const runs: number[][][] = [];
      for (const pipelined of [false, true]) {
        const model = await load(g);
        try {
          const seqs = g.prompts.slice(0, batch).map((p, i) => {
            const s = new Sequence(i, p.ids.length, p.ids, 64, GREEDY, new Set());
            s.pages = [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3];
            return s;
          });
          const apply = (tokens: Int32Array) => seqs.forEach((s, i) => (s.cached = s.tokens.length, s.tokens.push(tokens[i])));
          apply((await model.step(buildStep(seqs.map((seq) => ({ seq, count: seq.pending, samples: true }))))).tokens!);
          let inFlight = pipelined ? model.step(buildStep(seqs.map((seq) => ({ seq, count: 1, samples: true })))) : undefined;
          for (let k = 0; k < 16; k++) {
            if (!inFlight) {
              apply((await model.step(buildStep(seqs.map((seq) => ({ seq, count: 1, samples: true }))))).tokens!);
              continue;
            }
            const next = k < 15 ? model.step(buildStep(seqs.map((seq, i) => ({ seq, count: 1, samples: true, fedFrom: i })))) : undefined;
            apply((await inFlight).tokens!);
            inFlight = next;
          }
          runs.push(seqs.map((s) => s.tokens.slice(s.promptLength)));
        } finally {
          model.dispose();
        }
      }
      expect(runs[1], `batch ${batch}`).toEqual(runs[0]);
    }
  });
});

async function load(g: Golden): Promise<TargetModel> {
  return TargetModel.load(g.dir, { device: "cuda", maxStepTokens: 512, numPages: 64, pageSize: 16 });
}
