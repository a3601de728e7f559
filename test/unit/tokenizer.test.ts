import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Tokenizer } from "../../lib/tokenizer/tokenizer.js";
import { qwen3TokenizerDir } from "../../lib/tokenizer/qwen3-tokenizer-dir.js";

const qwenDir = qwen3TokenizerDir();
let qwen: Tokenizer;
const tmpDirs: string[] = [];

beforeAll(async () => {
  qwen = await Tokenizer.fromDir(qwenDir);
});
afterAll(() => Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true }))));

/** A copy of the Qwen3 tokenizer files with `files` written over (null removes one). */
async function tokenizerDir(files: Record<string, string | null> = {}): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "eagle3-tok-"));
  tmpDirs.push(dir);
  for (const name of ["tokenizer.json", "tokenizer_config.json"])
    if (!(name in files)) await copyFile(path.join(qwenDir, name), path.join(dir, name));
  for (const [name, text] of Object.entries(files)) if (text !== null) await writeFile(path.join(dir, name), text);
  return dir;
}

async function qwenConfig(): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(qwenDir, "tokenizer_config.json"), "utf8"));
}

const badTokenizer = (...parts: string[]) =>
  expect.objectContaining({ code: "ERR_BAD_TOKENIZER", message: expect.stringMatching(parts.map(escape).join(".*")) });
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("Qwen3 tokenizer", () => {
  it("knows the special tokens", () => {
    expect(qwen.tokenToId("<|endoftext|>")).toBe(151643);
    expect(qwen.tokenToId("<|im_start|>")).toBe(151644);
    expect(qwen.tokenToId("<|im_end|>")).toBe(151645);
    expect(qwen.idToToken(151644)).toBe("<|im_start|>");
    expect(qwen.tokenToId("no such token")).toBeUndefined();
    expect(qwen.vocabSize).toBe(151669);
    expect(qwen.bosTokenId).toBeUndefined();
    expect(qwen.eosTokenIds).toEqual([151645]);
  });

  it("encodes known text to known ids, special tokens as one id", () => {
    expect(qwen.encode("Hello world")).toEqual([9707, 1879]);
    expect(qwen.encode("<|im_start|>user\nhi<|im_end|>")).toEqual([151644, 872, 198, 6023, 151645]);
  });

  it.each([
    ["English", "The quick brown fox jumps over the lazy dog."],
    ["Chinese", "我们今天去吃饭吧，天气很好。龘靐齉爩"],
    ["emoji", "😀👍🏽 family: 👨‍👩‍👧 🧑🏽‍💻"],
    ["code", "def f(x):\n    if x:\n\t\treturn  x  # two spaces\n    return None\n"],
  ])("round-trips %s", (_, text) => {
    expect(qwen.decode(qwen.encode(text))).toBe(text);
  });

  it("skips special tokens on request, and decodes nothing to nothing", () => {
    const ids = qwen.encode("<|im_start|>user\nhi<|im_end|>");
    expect(qwen.decode(ids, { skipSpecialTokens: true })).toBe("user\nhi");
    expect(qwen.decode([])).toBe("");
    expect(() => qwen.decode([1.5])).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }));
  });

  it("encodes a chat without adding special tokens twice", () => {
    const messages = [{ role: "user", content: "Hi" }];
    const ids = qwen.encodeChat(messages);
    expect(ids).toEqual(qwen.encode(qwen.applyChatTemplate(messages), { addSpecialTokens: false }));
    expect(ids[0]).toBe(151644);
    expect(qwen.decode(ids)).toBe("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  });

  it("rejects malformed messages, naming the index", () => {
    const messages = [{ role: "user", content: "a" }, { role: "user", content: 3 }] as never;
    expect(() => qwen.applyChatTemplate(messages)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringContaining("messages[1]") }),
    );
  });
});

describe("stop ids", () => {
  it("joins generation_config.json, tokenizer_config.json and extraEos", async () => {
    const dir = await tokenizerDir({ "generation_config.json": JSON.stringify({ eos_token_id: [151643, 151645] }) });
    expect((await Tokenizer.fromDir(dir)).eosTokenIds).toEqual([151643, 151645]);
    expect((await Tokenizer.fromDir(dir, { extraEos: [151645, 100] })).eosTokenIds).toEqual([151643, 151645, 100]);
    await expect(Tokenizer.fromDir(dir, { extraEos: [999999] })).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
  });

  it("reads the tokenizer from tokenizerDir and generation_config.json from the model directory", async () => {
    const model = await mkdtemp(path.join(os.tmpdir(), "eagle3-model-"));
    tmpDirs.push(model);
    await writeFile(path.join(model, "generation_config.json"), JSON.stringify({ eos_token_id: 151643 }));
    const tok = await Tokenizer.fromDir(model, { tokenizerDir: qwenDir });
    expect(tok.eosTokenIds).toEqual([151643, 151645]);
  });
});

describe("chat template sources", () => {
  const msgs = [{ role: "user", content: "Hi" }];

  it("prefers chat_template.jinja over tokenizer_config.json", async () => {
    const dir = await tokenizerDir({ "chat_template.jinja": "FILE {{ messages[0].content }}" });
    expect((await Tokenizer.fromDir(dir)).applyChatTemplate(msgs)).toBe("FILE Hi");
  });

  it('picks "default" from a list of named templates', async () => {
    const chat_template = [
      { name: "tool_use", template: "TOOLS" },
      { name: "default", template: "DEFAULT {{ eos_token }}" },
    ];
    const config = { ...(await qwenConfig()), chat_template };
    const dir = await tokenizerDir({ "tokenizer_config.json": JSON.stringify(config) });
    expect((await Tokenizer.fromDir(dir)).applyChatTemplate(msgs)).toBe("DEFAULT <|im_end|>");
  });

  it("says so when the model has no chat template", async () => {
    const { chat_template: _, ...config } = await qwenConfig();
    const tok = await Tokenizer.fromDir(await tokenizerDir({ "tokenizer_config.json": JSON.stringify(config) }));
    expect(() => tok.applyChatTemplate(msgs)).toThrow(badTokenizer("no chat template"));
    expect(tok.encode("Hi")).toEqual([13048]);
  });

  it("reports a template that fails with the jinja message", async () => {
    const dir = await tokenizerDir({ "chat_template.jinja": "{{ raise_exception('only user turns') }}" });
    const tok = await Tokenizer.fromDir(dir);
    expect(() => tok.applyChatTemplate(msgs)).toThrow(badTokenizer("chat_template.jinja", "only user turns"));
  });
});

describe("broken tokenizer files", () => {
  it("names a missing tokenizer.json", async () => {
    const dir = await tokenizerDir({ "tokenizer.json": null });
    await expect(Tokenizer.fromDir(dir)).rejects.toEqual(badTokenizer(path.join(dir, "tokenizer.json")));
    const nowhere = path.join(os.tmpdir(), "eagle3-no-such-dir");
    await expect(Tokenizer.fromDir(nowhere)).rejects.toEqual(badTokenizer(path.join(nowhere, "tokenizer.json")));
  });

  it("names a tokenizer.json that is not JSON", async () => {
    const dir = await tokenizerDir({ "tokenizer.json": '{"model": ' });
    const file = path.join(dir, "tokenizer.json");
    await expect(Tokenizer.fromDir(dir)).rejects.toEqual(badTokenizer(file, "not valid JSON"));
  });

  it("names a tokenizer.json of the wrong structure, with the parser's message", async () => {
    const parts = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [] };
    const wrong = { ...parts, model: { type: "NoSuchModel" } };
    for (const [json, says] of [
      ["[]", "JSON object"],
      ["{}", 'must contain a "model" property'],
      [JSON.stringify(wrong), "NoSuchModel"],
    ]) {
      const dir = await tokenizerDir({ "tokenizer.json": json });
      await expect(Tokenizer.fromDir(dir)).rejects.toEqual(badTokenizer(path.join(dir, "tokenizer.json"), says));
    }
  });

  it("names a tokenizer_config.json that is not JSON, and a checkpoint's bad generation_config.json", async () => {
    const dir = await tokenizerDir({ "tokenizer_config.json": "{" });
    await expect(Tokenizer.fromDir(dir)).rejects.toEqual(badTokenizer(path.join(dir, "tokenizer_config.json")));
    const gen = await tokenizerDir({ "generation_config.json": JSON.stringify({ eos_token_id: "x" }) });
    const genFile = path.join(gen, "generation_config.json");
    // generation_config.json is the checkpoint's file, read once for the tokenizer and the engine.
    await expect(Tokenizer.fromDir(gen)).rejects.toEqual(
      expect.objectContaining({ code: "ERR_BAD_CHECKPOINT", message: expect.stringMatching(`${escape(genFile)}.*eos_token_id`) }));
  });
});
