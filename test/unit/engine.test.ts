/** Engine behaviour on the CPU with the tiny fixtures: batching, stopping, aborting, bad options. */
import { describe, expect, it } from "vitest";
import { Engine } from "../../lib/engine.js";
import { qwen3TokenizerDir } from "../../lib/tokenizer/qwen3-tokenizer-dir.js";
import { FIXTURES, readGolden } from "../helpers/golden.js";
import { join } from "node:path";

const tiny = join(FIXTURES, "qwen3-tiny");

describe("Engine on the CPU", () => {
  it("gives each request the same tokens alone and in a continuous batch", async () => {
    const g = await readGolden("qwen3-tiny");
    await using engine = await Engine.load({ model: tiny, device: "cpu", maxBatch: 3, maxStepTokens: 16, maxContext: 96 });
    const alone = [];
    for (const p of g.prompts) alone.push((await engine.complete({ tokens: p.ids }, { maxTokens: 10, ignoreEos: true })).tokens);
    // More requests than slots, prompts longer than the step budget: admission waits, prefill is chunked.
    const together = await Promise.all(g.prompts.map((p) => engine.complete({ tokens: p.ids }, { maxTokens: 10, ignoreEos: true })));
    expect(together.map((c) => c.tokens)).toEqual(alone);
    expect(engine.stats().running).toBe(0);
  });

  it("samples reproducibly for a seed and differently across seeds", async () => {
    await using engine = await Engine.load({ model: tiny, device: "cpu", maxContext: 64 });
    const opts = { maxTokens: 16, temperature: 1.0, topK: 50, topP: 0.95, ignoreEos: true };
    const a = await engine.complete({ tokens: [5, 6, 7] }, { ...opts, seed: 1 });
    const b = await engine.complete({ tokens: [5, 6, 7] }, { ...opts, seed: 1 });
    const c = await engine.complete({ tokens: [5, 6, 7] }, { ...opts, seed: 2 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
  });

  it("stops at a stop string, which is not part of the text", async () => {
    await using engine = await Engine.load({ model: join(FIXTURES, "qwen3-vocab"), tokenizer: qwen3TokenizerDir(), device: "cpu", maxContext: 128 });
    const full = await engine.complete("Once upon a time", { maxTokens: 24, ignoreEos: true });
    const stop = full.text.slice(Math.floor(full.text.length / 2), Math.floor(full.text.length / 2) + 2);
    const cut = await engine.complete("Once upon a time", { maxTokens: 24, ignoreEos: true, stop });
    expect(cut.finishReason).toBe("stop");
    expect(cut.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
  });

  it("aborts with ERR_ABORTED and frees the slot", async () => {
    await using engine = await Engine.load({ model: tiny, device: "cpu", maxContext: 256, maxBatch: 1 });
    const ac = new AbortController();
    const seen: number[] = [];
    await expect(async () => {
      for await (const c of engine.generate({ tokens: [1, 2, 3] }, { maxTokens: 200, ignoreEos: true, signal: ac.signal })) {
        seen.push(...c.tokens);
        if (seen.length === 5) ac.abort();
      }
    }).rejects.toMatchObject({ code: "ERR_ABORTED" });
    expect(seen.length).toBeLessThan(200);
    const after = await engine.complete({ tokens: [1, 2, 3] }, { maxTokens: 4, ignoreEos: true });
    expect(after.tokens).toHaveLength(4);
  });

  it("rejects bad options and inputs with ERR_INVALID_ARGUMENT naming them", async () => {
    await using engine = await Engine.load({ model: tiny, device: "cpu", maxContext: 32 });
    const bad = async (input: unknown, opts: unknown, re: RegExp) =>
      expect(engine.complete(input as never, opts as never)).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(re) });
    await bad({ tokens: [1] }, { maxTokens: 0 }, /maxTokens/);
    await bad({ tokens: [1] }, { temperature: -1 }, /temperature/);
    await bad({ tokens: [1] }, { topP: 0 }, /topP/);
    await bad({ tokens: [1, 99999] }, {}, /tokens\[1\]/);
    await bad({ tokens: Array(40).fill(3) }, {}, /40 tokens; the context holds 32/);
    await expect(engine.complete("text", {})).rejects.toMatchObject({ code: "ERR_BAD_TOKENIZER" });
    await expect(Engine.load({ model: tiny, device: "tpu" as never })).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
    await expect(Engine.load({ model: tiny, device: "cpu", speculation: "sometimes" as never }))
      .rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/speculation/) });
    await expect(Engine.load({ model: tiny, device: "cpu", profileEvery: -1 }))
      .rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/profileEvery/) });
  });

  it("caps the completion at the context and says so", async () => {
    await using engine = await Engine.load({ model: tiny, device: "cpu", maxContext: 20 });
    const c = await engine.complete({ tokens: Array(15).fill(3) }, { maxTokens: 100, ignoreEos: true });
    expect(c.tokens).toHaveLength(5);
    expect(c.finishReason).toBe("length");
  });
});
