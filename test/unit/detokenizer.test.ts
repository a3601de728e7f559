import { beforeAll, describe, expect, it } from "vitest";
import { StreamingDetokenizer, type TokenDecoder } from "../../lib/tokenizer/detokenizer.js";
import { Tokenizer } from "../../lib/tokenizer/tokenizer.js";
import { qwen3TokenizerDir } from "../../lib/tokenizer/qwen3-tokenizer-dir.js";

let qwen: Tokenizer;
beforeAll(async () => {
  qwen = await Tokenizer.fromDir(qwen3TokenizerDir());
});

/** Streams `ids` in steps of the given sizes (cycled), as speculative decoding accepts several per step. */
function stream(detok: StreamingDetokenizer, ids: number[], steps = [1]): string[] {
  const chunks: string[] = [];
  for (let i = 0, s = 0; i < ids.length; s++) {
    const n = steps[s % steps.length];
    chunks.push(detok.push(ids.slice(i, i + n)));
    i += n;
  }
  chunks.push(detok.flush());
  return chunks;
}

/** Records the longest id list it was asked to decode, and how many decodes it ran. */
function recording(inner: TokenDecoder) {
  const rec = {
    longest: 0,
    calls: 0,
    decode(ids: number[], opts?: { skipSpecialTokens?: boolean }) {
      rec.longest = Math.max(rec.longest, ids.length);
      rec.calls++;
      return inner.decode(ids, opts);
    },
  };
  return rec;
}

const texts = {
  emoji: "Birds 🦜🪿🫎 and a coder 🧑🏽‍💻, a family 👨‍👩‍👧!",
  cjk: "罕见字：龘靐齉爩 𠀀𠮷 鱻麤。常用字：我们今天去吃饭吧。",
  mixed: "def 龘():\n    return '🫎'  # ok\n",
};

describe("StreamingDetokenizer on a SentencePiece-style decoder", () => {
  // Like the Metaspace decoder: "▁" is a space, and the first token of a decode loses its leading one.
  const pieces = ["▁Hello", "▁world", "!", "▁again"];
  const metaspace: TokenDecoder = {
    decode: (ids) => ids.map((id) => pieces[id]).join("").replaceAll("▁", " ").replace(/^ /, ""),
  };

  it("keeps the space a lone token would lose", () => {
    const chunks = stream(new StreamingDetokenizer(metaspace), [0, 1, 2, 3, 1]);
    expect(chunks).toEqual(["Hello", " world", "!", " again", " world", ""]);
  });
});

describe("StreamingDetokenizer on Qwen3", () => {
  it.each(Object.entries(texts))("streams %s split across tokens exactly, with no U+FFFD", (_, text) => {
    const ids = qwen.encode(text);
    expect(ids.some((id) => qwen.decode([id]).includes("\ufffd"))).toBe(true);
    for (const steps of [[1], [3, 1, 5, 2]]) {
      const chunks = stream(new StreamingDetokenizer(qwen), ids, steps);
      expect(chunks.join("")).toBe(qwen.decode(ids));
      for (const c of chunks) expect(c).not.toContain("\ufffd");
    }
  });

  it("keeps leading spaces and emits each complete word at once", () => {
    const chunks = stream(new StreamingDetokenizer(qwen), qwen.encode("Hello world, again"));
    expect(chunks).toEqual(["Hello", " world", ",", " again", ""]);
  });

  it("skips special tokens unless asked not to", () => {
    const ids = qwen.encode("<think>\nhmm\n</think>\n\nHi<|im_end|>");
    expect(stream(new StreamingDetokenizer(qwen), ids).join("")).toBe("<think>\nhmm\n</think>\n\nHi");
    expect(stream(new StreamingDetokenizer(qwen, { skipSpecialTokens: false }), ids).join("")).toBe(
      "<think>\nhmm\n</think>\n\nHi<|im_end|>",
    );
  });

  it("holds a split character until it completes, and flush gives up what never does", () => {
    const [first, ...rest] = qwen.encode("🦜");
    const detok = new StreamingDetokenizer(qwen);
    expect(detok.push([first])).toBe("");
    expect(detok.push(rest)).toBe("🦜");
    expect(detok.push([first])).toBe("");
    expect(detok.flush()).toBe("\ufffd");
  });

  it("decodes a bounded window however long the stream", () => {
    const ids = qwen.encode(texts.emoji.repeat(200));
    const rec = recording(qwen);
    expect(stream(new StreamingDetokenizer(rec), ids).join("")).toBe(qwen.decode(ids));
    // Up to 8 emitted tokens as context, then a character's bytes held and the next token.
    expect(rec.longest).toBeLessThanOrEqual(8 + 4 + 1);
  });

  it("decodes about once per token, not twice", () => {
    const ids = qwen.encode(texts.mixed.repeat(50));
    const rec = recording(qwen);
    expect(stream(new StreamingDetokenizer(rec), ids).join("")).toBe(qwen.decode(ids));
    expect(rec.calls / ids.length).toBeLessThan(1.3);
  });

  it("lets go of a byte run that never forms a character", () => {
    const loneLead = qwen.tokenToId("ð")!; // byte 0xF0 on its own: every prefix ends in U+FFFD
    const ids = [...Array(100).fill(loneLead), ...qwen.encode(" done")];
    const rec = recording(qwen);
    const chunks = stream(new StreamingDetokenizer(rec), ids);
    expect(chunks.join("")).toBe(qwen.decode(ids));
    expect(chunks.filter((c) => c !== "").length).toBeGreaterThan(2);
    expect(rec.longest).toBeLessThanOrEqual(8 + 17);
  });
});
