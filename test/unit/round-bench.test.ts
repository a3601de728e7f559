/** The round benchmark's path on the CPU with a tiny random target and head (the figures are the GPU's to report). */
import { describe, expect, it } from "vitest";
import { benchRounds } from "../../lib/bench/round-bench.js";
import { PRESETS } from "../../lib/model/presets.js";

describe("round benchmark", () => {
  it("times decode steps, graph-shaped rounds and profiled phases with a random head", async () => {
    const config = { ...PRESETS["qwen3-4b"], hiddenSize: 64, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 16, rotaryDim: 16, intermediateSize: 96, vocabSize: 40000 };
    const rows = await benchRounds({ preset: "tiny", config, batches: [1, 3], context: 40, rounds: 3, seed: 1, device: "cpu", tree: { steps: 3, topk: 2, draftTokens: 5 } });
    expect(rows.map((r) => r.batch)).toEqual([1, 3]);
    for (const r of rows) {
      for (const k of ["decodeMs", "roundWallMs", "roundDeviceMs", "pipelinedWallMs", "draftMs", "verifyMs", "acceptMs"] as const) expect(r[k], k).toBeGreaterThan(0);
      expect(r.hostShare).toBeGreaterThanOrEqual(0);
      expect(r.hostShare).toBeLessThan(1);
    }
  }, 60_000);
});
