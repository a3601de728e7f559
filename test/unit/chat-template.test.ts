import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ChatTemplate } from "../../lib/tokenizer/chat-template.js";
import { qwen3TokenizerDir } from "../../lib/tokenizer/qwen3-tokenizer-dir.js";

const configFile = path.join(qwen3TokenizerDir(), "tokenizer_config.json");
const qwen = new ChatTemplate(JSON.parse(readFileSync(configFile, "utf8")).chat_template, configFile);

const failure = (code: string, text = "") =>
  expect.objectContaining({ code, message: expect.stringContaining(text) });

describe("Qwen3 chat template", () => {
  const convo = [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is 2+2?" },
  ];

  it("renders system + user with the generation prompt", () => {
    expect(qwen.render(convo)).toBe(
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n" +
        "<|im_start|>assistant\n",
    );
  });

  it("leaves the assistant turn unopened without addGenerationPrompt", () => {
    expect(qwen.render(convo, { addGenerationPrompt: false })).toBe(
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
    );
  });

  it("closes an empty think block when enableThinking is false, and only then", () => {
    const base = qwen.render(convo);
    expect(qwen.render(convo, { enableThinking: false })).toBe(base + "<think>\n\n</think>\n\n");
    expect(qwen.render(convo, { enableThinking: true })).toBe(base);
  });

  it("drops the reasoning of earlier assistant turns", () => {
    const turns = [
      { role: "user", content: "Q1" },
      { role: "assistant", content: "<think>\nreasoning\n</think>\n\nA1" },
      { role: "user", content: "Q2" },
    ];
    expect(qwen.render(turns)).toBe(
      "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n" +
        "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("lists tools in the system turn as JSON", () => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
    expect(qwen.render([{ role: "user", content: "Weather?" }], { tools })).toBe(
      "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}\n</tools>\n\n' +
        "For each function call, return a json object with function name and arguments within " +
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n' +
        "</tool_call><|im_end|>\n<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n",
    );
  });
});

describe("ChatTemplate variables", () => {
  const msgs = [{ role: "user", content: "x" }];

  it("passes special tokens, extra variables, and named options over extra ones", () => {
    const t = new ChatTemplate("{{ bos_token }}|{{ eos_token }}|{{ foo }}|{{ add_generation_prompt }}", "test");
    const extra = { foo: "bar", add_generation_prompt: false };
    expect(t.render(msgs, { extra }, { bosToken: "<s>", eosToken: "</s>" })).toBe("<s>|</s>|bar|true");
  });

  it("leaves enable_thinking undefined unless given, also through extra", () => {
    const t = new ChatTemplate("{{ enable_thinking is defined }}/{{ enable_thinking }}", "test");
    expect(t.render(msgs)).toBe("false/");
    expect(t.render(msgs, { extra: { enable_thinking: false } })).toBe("true/false");
  });
});

describe("ChatTemplate errors", () => {
  const msgs = [{ role: "user", content: "x" }];

  it("names the origin of a template that does not parse", () => {
    expect(() => new ChatTemplate("{% if %}", "/m/chat_template.jinja")).toThrow(
      failure("ERR_BAD_TOKENIZER", "/m/chat_template.jinja"),
    );
  });

  it("reports a rendering failure with the template's own message", () => {
    const t = new ChatTemplate("{{ raise_exception('roles must alternate') }}", "t");
    expect(() => t.render(msgs)).toThrow(failure("ERR_BAD_TOKENIZER", "roles must alternate"));
  });

  it("rejects malformed messages, naming the index", () => {
    for (const messages of [[], "hi", [{ role: 1, content: "x" }], [null]])
      expect(() => qwen.render(messages as never)).toThrow(failure("ERR_INVALID_ARGUMENT"));
    expect(() => qwen.render([...msgs, { role: "user" }] as never)).toThrow(
      failure("ERR_INVALID_ARGUMENT", "messages[1]"),
    );
  });
});
