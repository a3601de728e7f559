/** `eagle3 generate`: one completion, streamed to stdout (or one JSON object with --json). */
import { readFile } from "node:fs/promises";
import { Engine, type GenerateInput } from "../engine.js";
import type { ChatMessage } from "../tokenizer/tokenizer.js";
import { UsageError, num, parse, speculationOf, str, treeOf } from "./args.js";
import { defaultModel } from "./defaults.js";

const HELP = `usage: eagle3 generate [options]

  --model DIR          Hugging Face model directory (default: the embedded random Qwen3 fixture)
  --tokenizer DIR      tokenizer files, when the model directory has none
  --device cuda|cpu    default: cuda when a GPU is usable, else cpu
  --prompt TEXT        raw text to continue (no chat template)
  --chat TEXT          a user message, rendered with the model's chat template
  --system TEXT        a system message for --chat
  --messages FILE      a JSON file holding [{ role, content }, ...]
  --max-tokens N       default 64
  --temperature T      0 = greedy (default)
  --top-k K  --top-p P  --seed S
  --stop TEXT          stop string (repeatable)
  --ignore-eos         keep generating past end-of-sequence tokens
  --max-context N      prompt + completion capacity (default min(model limit, 8192))
  --draft DIR          an EAGLE-3 head for --model: speculative decoding (output stays the target's)
  --speculation MODE   auto (default: speculate where it measures faster) or always
  --tree S,K,N         draft steps, top-k and draft tokens (default: chosen per batch size)
  --json               print one JSON object (text, tokens, timings, speculative counters) instead of streaming text`;

export async function run(argv: string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: "string" }, tokenizer: { type: "string" }, device: { type: "string" },
    prompt: { type: "string" }, chat: { type: "string" }, system: { type: "string" }, messages: { type: "string" },
    "max-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
    "top-p": { type: "string" }, seed: { type: "string" }, stop: { type: "string", multiple: true },
    "ignore-eos": { type: "boolean" }, "max-context": { type: "string" }, json: { type: "boolean" },
    draft: { type: "string" }, speculation: { type: "string" }, tree: { type: "string" },
  }, HELP);
  if (!p) return 0;
  const given = ["prompt", "chat", "messages"].filter((k) => p.values[k] !== undefined);
  if (given.length > 1) throw new UsageError(`give one of --prompt, --chat, --messages (got ${given.join(", ")})`, HELP);
  const input = await readInput(p);
  const model = str(p, "model"), draft = str(p, "draft");
  if (draft && !model) throw new UsageError("--draft needs the --model it was trained for", HELP);
  const defaults = model ? undefined : defaultModel();
  await using engine = await Engine.load({
    model: model ?? defaults!.model,
    tokenizer: str(p, "tokenizer") ?? defaults?.tokenizer,
    device: str(p, "device") as "cuda" | "cpu" | undefined,
    maxContext: num(p, "max-context"),
    maxBatch: 1,
    draft,
    speculation: speculationOf(p),
    tree: treeOf(p),
  });
  const options = {
    maxTokens: num(p, "max-tokens") ?? 64,
    temperature: num(p, "temperature"),
    topK: num(p, "top-k"),
    topP: num(p, "top-p"),
    seed: num(p, "seed"),
    stop: p.values.stop as string[] | undefined,
    ignoreEos: p.values["ignore-eos"] === true,
  };
  if (p.values.json) {
    const c = await engine.complete(input, options);
    console.log(JSON.stringify({ model: engine.target.source, device: engine.device, ...c, stats: engine.stats() }, null, 2));
    return 0;
  }
  for await (const chunk of engine.generate(input, options)) process.stdout.write(chunk.text);
  process.stdout.write("\n");
  return 0;
}

async function readInput(p: NonNullable<ReturnType<typeof parse>>): Promise<GenerateInput> {
  const prompt = str(p, "prompt");
  if (prompt !== undefined) return prompt;
  const file = str(p, "messages");
  if (file !== undefined) {
    let messages: unknown;
    try {
      messages = JSON.parse(await readFile(file, "utf8"));
    } catch (err) {
      throw new UsageError(`--messages ${file}: ${(err as Error).message}`, p.help);
    }
    return messages as ChatMessage[];
  }
  const messages: ChatMessage[] = [];
  const system = str(p, "system");
  if (system !== undefined) messages.push({ role: "system", content: system });
  messages.push({ role: "user", content: str(p, "chat") ?? "Tell me about eagles." });
  return messages;
}
