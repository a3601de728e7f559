/** The fast byte-level decode gives @huggingface/tokenizers' text for any ids of the Qwen3 vocabulary. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";
import { ByteLevelDecoder } from "../../lib/tokenizer/byte-level-decoder.js";
import { qwen3TokenizerDir } from "../../lib/tokenizer/qwen3-tokenizer-dir.js";

const dir = qwen3TokenizerDir();
const json = JSON.parse(readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
const config = { ...JSON.parse(readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")), clean_up_tokenization_spaces: false };
const hf = new HfTokenizer(json, config);
const fast = ByteLevelDecoder.for((id) => hf.id_to_token(id), json, config)!;

describe("ByteLevelDecoder", () => {
  it("decodes random ids as the library does, special tokens skipped or kept", () => {
    expect(fast).toBeDefined();
    const vocab = hf.get_vocab(true).size;
    const added = (json.added_tokens as Array<{ id: number }>).map((t) => t.id);
    // Byte tokens (ids below 256 are single bytes here: split characters), ordinary tokens, added ones.
    let seed = 7;
    const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    const pick = () => [rand(256), rand(vocab), added[rand(added.length)]][rand(10) < 4 ? 0 : rand(10) < 8 ? 1 : 2];
    for (let i = 0; i < 3000; i++) {
      const ids = Array.from({ length: 1 + rand(16) }, pick);
      for (const skip of [false, true]) expect(fast.decode(ids, skip), `${ids}`).toBe(hf.decode(ids, { skip_special_tokens: skip }));
    }
  });

  it("gives text the library encoded back, emoji and CJK included", () => {
    const text = "def 龘():\n    return '🫎'  # ok 🧑🏽‍💻<|im_end|>\n";
    const ids = hf.encode(text, { add_special_tokens: false }).ids;
    expect(fast.decode(ids, false)).toBe(text);
    expect(fast.decode(ids, true)).toBe(text.replace("<|im_end|>", ""));
  });

  it("leaves ids outside the vocabulary, and other decoders, to the library", () => {
    expect(fast.decode([1, 10 ** 7], false)).toBeUndefined();
    expect(ByteLevelDecoder.for((id) => hf.id_to_token(id), { ...json, decoder: { type: "Metaspace" } }, config)).toBeUndefined();
    expect(ByteLevelDecoder.for((id) => hf.id_to_token(id), json, { clean_up_tokenization_spaces: true })).toBeUndefined();
  });
});
