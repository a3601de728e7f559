/**
 * Scaled RoPE for drafts: the inverse-frequency tables of linear, llama3 and yarn scaling against
 * their defining properties (band edges worked out by hand), the CPU op running a table with cos and
 * sin scaled, and a draft whose config asks for scaling loading and running with it.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PageAllocator } from "../../lib/batch/page-allocator.js";
import { GREEDY, Sequence } from "../../lib/batch/sequence.js";
import { buildSpecPrefill } from "../../lib/batch/step-plan.js";
import { readTargetConfig } from "../../lib/model/config.js";
import { openDraft } from "../../lib/model/draft.js";
import { scaledRope } from "../../lib/model/rope-frequencies.js";
import { TargetModel } from "../../lib/model/target.js";
import { native } from "../../lib/native.js";
import { FIXTURES } from "../helpers/golden.js";
import { deviceLayout, hostLayout } from "../helpers/layout.js";
import { poisoned, randn, rng, tensor, values } from "../helpers/tensors.js";

const base = (theta: number, dim: number) => Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / dim));

describe("scaled RoPE tables", () => {
  it("linear: every frequency slowed by the factor", () => {
    const { invFreq, scale } = scaledRope(1e4, 64, { type: "linear", factor: 4 });
    base(1e4, 64).forEach((f, i) => expect(invFreq[i]).toBeCloseTo(f / 4, 7));
    expect(scale).toBe(1);
  });

  it("llama3 (Llama-3.1: theta 500000, factor 8, bands 1 and 4 over 8192 positions): short wavelengths kept, long ones slowed 8×, continuous between", () => {
    const s = { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } as const;
    const { invFreq } = scaledRope(5e5, 128, s);
    const f = base(5e5, 128);
    let kept = 0, slowed = 0, between = 0;
    f.forEach((inv, i) => {
      const wavelen = (2 * Math.PI) / inv;
      if (wavelen < 2048) (kept++, expect(invFreq[i]).toBeCloseTo(inv, 7));
      else if (wavelen > 8192) (slowed++, expect(invFreq[i] / (inv / 8)).toBeCloseTo(1, 6));
      else {
        between++;
        expect(invFreq[i]).toBeLessThanOrEqual(inv * (1 + 1e-6));
        expect(invFreq[i]).toBeGreaterThanOrEqual((inv / 8) * (1 - 1e-6));
      }
      if (i) expect(invFreq[i]).toBeLessThan(invFreq[i - 1]);  // still decreasing: no jump at the band edges
    });
    expect([kept > 0, slowed > 0, between > 0]).toEqual([true, true, true]);
  });

  it("yarn (Qwen2.5's: factor 4 over 32768 positions, theta 1e6): dimensions up to 23 kept, from 40 slowed 4×, a ramp between, cos and sin × 1.1386", () => {
    // Correction range: 128·ln(32768 / (β·2π)) / (2·ln 1e6) for β = 32 and 1: 23.6 and 39.7, floored and ceiled.
    const s = { type: "yarn", factor: 4, originalMaxPositionEmbeddings: 32768, betaFast: 32, betaSlow: 1, truncate: true, attentionFactor: 0.1 * Math.log(4) + 1 } as const;
    const { invFreq, scale } = scaledRope(1e6, 128, s);
    const f = base(1e6, 128);
    for (let i = 0; i <= 23; i++) expect(invFreq[i] / f[i]).toBeCloseTo(1, 6);
    for (let i = 40; i < 64; i++) expect(invFreq[i] / f[i]).toBeCloseTo(0.25, 6);
    expect(invFreq[31] / f[31]).toBeCloseTo(0.25 + 0.75 * (1 - 8 / 17), 5);
    expect(scale).toBeCloseTo(1.1386, 4);
  });
});

describe("qkv_rope_store with a table (CPU reference)", () => {
  it("rotates by the table's angles and scales cos and sin", () => {
    const ops = new (native().NativeOps)("cpu");
    const d = 8, heads = 1, kv = 1, r = rng(3);
    const h = hostLayout([{ qLen: 1, kvLen: 1 }], 16, 4, r);
    const x = randn((heads + 2 * kv) * d, r);
    const inv = Float32Array.of(1, 0.3, 0.05, 0.001), pos = 7, scale = 1.25;
    const q = poisoned("f32", [1, heads, d], "cpu");
    const kc = poisoned("f32", [64, kv, d], "cpu"), vc = poisoned("f32", [64, kv, d], "cpu");
    ops.qkvRopeStore(tensor(x, "f32", [1, (heads + 2 * kv) * d], "cpu"), null, null, 1e-6, tensor(Int32Array.of(pos), "i32", [1], "cpu"),
      d, 1e4, deviceLayout(h, "cpu"), q, kc, vc, tensor(inv, "f32", [d / 2], "cpu"), scale);
    const got = values(q);
    for (let i = 0; i < d / 2; i++) {
      const c = Math.cos(pos * inv[i]) * scale, s = Math.sin(pos * inv[i]) * scale;
      expect(got[i]).toBeCloseTo(x[i] * c - x[i + d / 2] * s, 5);
      expect(got[i + d / 2]).toBeCloseTo(x[i + d / 2] * c + x[i] * s, 5);
    }
    expect(() => ops.qkvRopeStore(tensor(x, "f32", [1, 3 * d], "cpu"), null, null, 1e-6, tensor(Int32Array.of(pos), "i32", [1], "cpu"),
      d, 1e4, deviceLayout(h, "cpu"), q, kc, vc, tensor(Float32Array.of(1, 2), "f32", [2], "cpu")))
      .toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringContaining("inverse frequencies must be f32 [4]") }));
  });
});

describe("rope_attention (CPU: the two ops in turn)", () => {
  it("rotates by its table and attends as qkv_rope_store then attention do, the rope's arguments in the same places", () => {
    const ops = new (native().NativeOps)("cpu");
    const d = 8, heads = 2, kv = 1, r = rng(5);
    const h = hostLayout([{ qLen: 2, kvLen: 9 }], 16, 4, r);
    const qkv = tensor(randn(2 * (heads + 2 * kv) * d, r), "f32", [2, (heads + 2 * kv) * d], "cpu");
    const positions = tensor(Int32Array.of(7, 8), "i32", [2], "cpu"), table = tensor(Float32Array.of(1, 0.3, 0.05, 0.001), "f32", [d / 2], "cpu");
    const cache = randn(64 * kv * d, r);
    const run = (fused: boolean) => {
      const q = poisoned("f32", [2, heads, d], "cpu"), out = poisoned("f32", [2, heads, d], "cpu");
      const kc = tensor(cache, "f32", [64, kv, d], "cpu"), vc = tensor(cache, "f32", [64, kv, d], "cpu");
      if (fused) ops.ropeAttention(qkv, null, null, 1e-6, positions, d, 1e4, deviceLayout(h, "cpu"), q, kc, vc, 0.35, out, table, 1.25);
      else {
        ops.qkvRopeStore(qkv, null, null, 1e-6, positions, d, 1e4, deviceLayout(h, "cpu"), q, kc, vc, table, 1.25);
        ops.attention(q, kc, vc, deviceLayout(h, "cpu"), 0.35, out);
      }
      return [out, kc, vc].map(values);
    };
    expect(run(true)).toEqual(run(false));
  });
});

describe("a draft with RoPE scaling", () => {
  const target = join(FIXTURES, "qwen3-tiny");
  /** The fixture draft's top-16 after a prompt, with `rope_scaling` set in a copy of its config. */
  async function candidates(ropeScaling?: object) {
    const dir = mkdtempSync(join(tmpdir(), "e3-rope-"));
    try {
      cpSync(join(FIXTURES, "eagle3-qwen3-tiny"), dir, { recursive: true });
      const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      if (ropeScaling) writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, rope_scaling: ropeScaling }));
      const { config } = await readTargetConfig(target);
      const model = await TargetModel.load(target, { device: "cpu", maxStepTokens: 64, numPages: 8, pageSize: 16 }, config, await openDraft(dir, config, 1));
      try {
        const prompt = [11, 22, 33, 44, 55, 66, 77, 88, 99, 111, 122, 133];
        const seq = new Sequence(0, prompt.length, prompt, 8, GREEDY, new Set());
        seq.pages = new PageAllocator(8).alloc(2)!;
        seq.slot = 0;
        await model.prefillSpeculative(buildSpecPrefill([{ seq, count: prompt.length, samples: true }], () => true));
        return model.draftCandidates(0);
      } finally {
        model.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it("runs with its own table: factor 1 is the unscaled draft, factor 4 is not", async () => {
    const plain = await candidates();
    const same = await candidates({ rope_type: "linear", factor: 1 });
    expect(Array.from(same.ids)).toEqual(Array.from(plain.ids));
    same.probs.forEach((p, i) => expect(p).toBeCloseTo(plain.probs[i], 5));
    const slowed = await candidates({ rope_type: "linear", factor: 4 });
    const moved = Math.max(...Array.from(slowed.probs, (p, i) => Math.abs(p - plain.probs[i])));
    expect(moved, "the scaled positions change the draft's distribution").toBeGreaterThan(1e-4);
  });
});
