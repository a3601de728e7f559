// Host time per decode step, the device's work taken out: the tiny CPU fixture engine with its step
// replaced by one that answers on the next macrotask with real text's token ids (the Qwen3
// tokenizer's ids of HumanEval), so what is timed is planning, streaming and detokenizing.
//   node bench/host_step.mjs [--batch 1,8,32,64] [--repeats 5] [--json FILE]   (after npm run build)
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { execFileSync } from "node:child_process";
import { cpus } from "node:os";
import { Engine } from "../dist/engine.js";
import { Tokenizer } from "../dist/tokenizer/tokenizer.js";
import { qwen3TokenizerDir } from "../dist/tokenizer/qwen3-tokenizer-dir.js";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const { values } = parseArgs({ options: { batch: { type: "string", default: "1,8,32,64" }, repeats: { type: "string", default: "5" }, json: { type: "string" } } });
const batches = values.batch.split(",").map(Number), repeats = Number(values.repeats);
const tokenizer = await Tokenizer.fromDir(qwen3TokenizerDir());
const text = tokenizer.encode(readFileSync(here("./data/humaneval.jsonl"), "utf8").slice(0, 400_000), { addSpecialTokens: false });
const rows = [];
for (const batch of batches) {
  const engine = await Engine.load({ model: here("../test/fixtures/qwen3-tiny"), device: "cpu", tokenizer: qwen3TokenizerDir(), maxBatch: batch, maxContext: 256 });
  let at = 0;
  engine.target.step = async (s) => {
    await new Promise((resolve) => setImmediate(resolve));
    const tokens = new Int32Array(s.logitRows.length);
    for (let i = 0; i < tokens.length; i++) tokens[i] = text[at++ % text.length];
    return { tokens, callMs: 0 };
  };
  // Eight waves of 128-token requests, as a timed run of eagle3 bench.
  const prompts = Array.from({ length: 8 * batch }, (_, i) => Array.from({ length: 20 }, (_, j) => ((i * 31 + j * 7) % 200) + 2));
  const run = async () => {
    const before = engine.stats().steps, t0 = performance.now();
    await Promise.all(prompts.map((tokens) => engine.complete({ tokens }, { maxTokens: 128, ignoreEos: true })));
    return ((performance.now() - t0) * 1000) / (engine.stats().steps - before);
  };
  await run();  // warm-up
  const us = [];
  for (let r = 0; r < repeats; r++) us.push(await run());
  us.sort((x, y) => x - y);
  rows.push({ batch, usPerStep: Math.round(us[us.length >> 1]), runs: us.map(Math.round) });
  console.log(`batch ${batch}: ${rows.at(-1).usPerStep} µs of host time a step (runs ${rows.at(-1).runs.join(" ")})`);
  await engine.dispose();
}
if (values.json) {
  let commit = "unknown";
  try { commit = execFileSync("git", ["rev-parse", "HEAD"], { encoding: "utf8" }).trim(); } catch {}
  writeFileSync(values.json, JSON.stringify({ kind: "host-step", date: new Date().toISOString(), commit, node: process.version, device: `${cpus()[0].model} × ${cpus().length}`, rows }, null, 2) + "\n");
}
