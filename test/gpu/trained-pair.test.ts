/**
 * Lossless at high acceptance: on the pair `bench/train_pair.py` trains (E3_PAIR_DIR holding
 * target/ and draft/), greedy output with the draft equals greedy output without it, up to bf16
 * near-ties, over HumanEval and MT-Bench prompts at batch 1 and 4. Run by scripts/device-pair.sh.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadPrompts } from "../../lib/bench/datasets.js";
import { Engine } from "../../lib/engine.js";
import { qwen3TokenizerDir } from "../../lib/tokenizer/qwen3-tokenizer-dir.js";
import { expectSameOrNearTie } from "../helpers/divergence.js";
import { hasCuda } from "../helpers/tensors.js";

const dir = process.env.E3_PAIR_DIR ?? "";
const ready = hasCuda && dir !== "" && existsSync(join(dir, "draft", "config.json"));

describe.skipIf(!ready)(ready ? `trained pair in ${dir}` : "trained pair (skipped: no GPU or no E3_PAIR_DIR)", () => {
  it.each([1, 4])("greedy with the draft equals greedy without, batch %i", async (batch) => {
    const common = { model: join(dir, "target"), tokenizer: qwen3TokenizerDir(), device: "cuda" as const, maxContext: 1024, maxBatch: batch };
    await using plain = await Engine.load(common);
    await using spec = await Engine.load({ ...common, draft: join(dir, "draft"), speculation: "always" });
    const texts = [...(await loadPrompts("humaneval", 4)), ...(await loadPrompts("mtbench", 4))];
    const prompts = texts.map((t) => plain.tokenizer!.encodeChat([{ role: "user", content: t }], { addGenerationPrompt: true }));
    const ask = (e: Engine) => Promise.all(prompts.map((ids) => e.complete({ tokens: ids }, { maxTokens: 96, ignoreEos: true })));
    const [want, got] = [await ask(plain), await ask(spec)];
    let same = 0;
    for (const [i, ids] of prompts.entries()) {
      if (got[i].tokens.join() === want[i].tokens.join()) same++;
      else await expectSameOrNearTie(plain.target, ids, got[i].tokens, want[i].tokens, 3e-2, `prompt ${i}`);
    }
    const s = spec.stats().speculative!;
    console.log(`batch ${batch}: ${same}/${prompts.length} identical, mean accepted length ${s.meanAcceptedLength.toFixed(2)}`);
    expect(s.meanAcceptedLength, "the pair's drafts are accepted").toBeGreaterThan(1.5);
  }, 300_000);
});
