/**
 * The CPU reference forward against transformers (fp32, from the same bf16 weights): logits and
 * hidden states within 1e-4 relative, greedy continuations identical, for Qwen3 (untied, q/k norm,
 * head_dim ≠ hidden/heads), Qwen2 (tied, q/k/v bias, sharded) and the full-vocabulary Qwen3.
 */
import { describe, expect, it } from "vitest";
import { Engine } from "../../lib/engine.js";
import { buildStep } from "../../lib/batch/step-plan.js";
import { GREEDY, Sequence } from "../../lib/batch/sequence.js";
import { readTargetConfig } from "../../lib/model/config.js";
import { TargetModel } from "../../lib/model/target.js";
import { qwen3TokenizerDir } from "../../lib/tokenizer/qwen3-tokenizer-dir.js";
import { maxRelDiff, readGolden } from "../helpers/golden.js";

const TOL = 1e-4;

describe.each(["qwen3-tiny", "qwen2-tiny", "qwen3-vocab"])("%s on the CPU against transformers", (name) => {
  it("prefill logits and hidden states of every prompt, one step with all prompts batched", async () => {
    const g = await readGolden(name);
    const pageSize = 16;
    const pagesPer = Math.ceil(Math.max(...g.prompts.map((p) => p.ids.length)) / pageSize);
    const { config } = await readTargetConfig(g.dir);
    const layers = config.numLayers, H = config.hiddenSize, V = config.vocabSize;
    const capture = await TargetModel.load(g.dir, {
      device: "cpu", maxStepTokens: 256, numPages: pagesPer * g.prompts.length, pageSize, captureLayers: Array.from({ length: layers }, (_, i) => i),
    });
    try {
      const seqs = g.prompts.map((p, i) => {
        const s = new Sequence(i, p.ids.length, p.ids, 1, GREEDY, new Set());
        s.pages = Array.from({ length: pagesPer }, (_, j) => i * pagesPer + j);
        return s;
      });
      const step = buildStep(seqs.map((seq) => ({ seq, count: seq.pending, samples: true })), { wantHidden: true, wantLogits: true });
      const lastOnly = V > 4096;
      if (!lastOnly) {
        step.logitRows = Int32Array.from({ length: step.tokens.length }, (_, i) => i);
        step.sampling = undefined;
      }
      const res = await capture.step(step);
      let row = 0, tok = 0;
      g.prompts.forEach((p, i) => {
        const want = g.tensor(`p${i}.f32.logits`);
        const rows = lastOnly ? 1 : p.ids.length;
        const got = res.logits!.subarray(row * V, (row + rows) * V);
        expect(maxRelDiff(got, want.data), `prompt ${i} logits`).toBeLessThan(TOL);
        row += rows;
        const hid = g.tensor(`p${i}.hidden`);  // [L, T, H]
        // transformers' last hidden state is after the final norm; ours is the layer's output
        // (EAGLE-3 never captures the last layer), so the last layer is left out here.
        for (let l = 0; l < layers - 1; l++)
          for (let t = 0; t < p.ids.length; t++) {
            const got = res.hidden!.subarray(((tok + t) * layers + l) * H, ((tok + t) * layers + l + 1) * H);
            const want = hid.data.subarray((l * p.ids.length + t) * H, (l * p.ids.length + t + 1) * H);
            expect(maxRelDiff(got, want), `prompt ${i} layer ${l} token ${t} hidden`).toBeLessThan(TOL);
          }
        tok += p.ids.length;
      });
    } finally {
      capture.dispose();
    }
  });

  it("greedy continuations through the engine equal transformers'", async () => {
    const g = await readGolden(name);
    const tokenizer = name === "qwen3-vocab" ? qwen3TokenizerDir() : undefined;
    await using engine = await Engine.load({ model: g.dir, tokenizer, device: "cpu", maxContext: 128, maxBatch: 4 });
    const results = await Promise.all(g.prompts.map((p) => engine.complete({ tokens: p.ids }, { maxTokens: g.newTokens })));
    results.forEach((r, i) => expect(r.tokens, `prompt ${i}`).toEqual(g.prompts[i].greedy_f32));
  });
});
