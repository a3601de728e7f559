/** `eagle3 bench` and `eagle3 generate` with --draft end to end on the CPU: real tokenizer, 32k → 151,936 vocabulary map. */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../lib/engine.js";
import { qwen3TokenizerDir } from "../../lib/tokenizer/qwen3-tokenizer-dir.js";
import { writeRandomPair } from "../helpers/random-checkpoint.js";

const run = promisify(execFile);
const cli = join(import.meta.dirname, "..", "..", "bin", "eagle3.js");

describe("EAGLE-3 with a full-vocabulary pair on the CPU", () => {
  let dir = "", pair = { target: "", draft: "" };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "e3-pair-"));
    pair = await writeRandomPair(dir);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("greedy output with the draft equals greedy output without, chat prompts through the real tokenizer", async () => {
    const tokenizer = qwen3TokenizerDir();
    await using plain = await Engine.load({ model: pair.target, tokenizer, device: "cpu", maxContext: 128 });
    await using spec = await Engine.load({ model: pair.target, draft: pair.draft, tokenizer, device: "cpu", maxContext: 128 });
    for (const text of ["Write a haiku about the sea.", "def fib(n):"]) {
      const a = await plain.complete([{ role: "user", content: text }], { maxTokens: 24, ignoreEos: true });
      const b = await spec.complete([{ role: "user", content: text }], { maxTokens: 24, ignoreEos: true });
      expect(b.tokens).toEqual(a.tokens);
      expect(b.text).toBe(a.text);
      // eagle3 bench feeds prompts encoded beforehand: the same ids, the same output.
      const ids = plain.encode([{ role: "user", content: text }]);
      expect(ids.length).toBe(a.promptTokens);
      const c = await spec.complete({ tokens: ids }, { maxTokens: 24, ignoreEos: true });
      expect(c.tokens).toEqual(a.tokens);
    }
  });

  it("eagle3 generate --draft streams the target's greedy output and reports the rounds", async () => {
    const args = ["generate", "--model", pair.target, "--tokenizer", qwen3TokenizerDir(), "--device", "cpu", "--prompt", "def fib(n):",
      "--max-tokens", "12", "--ignore-eos", "--json"];
    const plain = JSON.parse((await run(process.execPath, [cli, ...args], { timeout: 60_000 })).stdout);
    const spec = JSON.parse((await run(process.execPath, [cli, ...args, "--draft", pair.draft, "--speculation", "always", "--tree", "3,2,4"], { timeout: 60_000 })).stdout);
    expect(spec.tokens).toEqual(plain.tokens);
    expect(plain.speculative).toBeUndefined();
    expect(spec.speculative.rounds).toBeGreaterThan(0);
    expect(spec.speculative.draftedTokens).toBe(3 * spec.speculative.rounds);
    await expect(run(process.execPath, [cli, "generate", "--draft", pair.draft])).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/--draft needs the --model/) });
  });

  it("eagle3 bench prints the table and writes the JSON and the plot", async () => {
    const json = join(dir, "bench.json"), svg = join(dir, "bench.svg");
    const { stdout } = await run(process.execPath, [cli, "bench", "--model", pair.target, "--draft", pair.draft, "--tokenizer", qwen3TokenizerDir(),
      "--device", "cpu", "--dataset", "humaneval", "--batch", "1,2", "--prompts", "3", "--max-tokens", "6", "--run-steps", "12", "--tree", "3,2,4", "--speculation", "always",
      "--json", json, "--plot", svg], { timeout: 120_000 });
    expect(stdout).toMatch(/\| humaneval \| 1 \|/);
    const r = JSON.parse(await readFile(json, "utf8"));
    expect(r.kind).toBe("speculative");
    expect(r.rows).toHaveLength(2);
    // Runs of about 12 steps: two waves of six-token requests, the three prompts reused in turn.
    expect(r.rows.map((row: { requests: number }) => row.requests)).toEqual([2, 4]);
    for (const row of r.rows) {
      expect(row.baselineTokensPerSecond).toBeGreaterThan(0);
      expect(row.baselineSpread).toBeGreaterThanOrEqual(0);
      expect(row.speedupRange[0]).toBeLessThanOrEqual(row.speedup);
      expect(row.speedupRange[1]).toBeGreaterThanOrEqual(row.speedup);
      expect(row.meanAcceptedLength).toBeGreaterThanOrEqual(1);
      expect(row.ofIdeal, "every iteration a round: the share of the ideal is reported").toBeGreaterThan(0);
      expect(row.phases.iterations).toBeGreaterThan(0);
      expect(row.phases.deviceMs).toBeGreaterThan(0);
      expect(row.phases.draftMs).toBeGreaterThan(0);
      expect(row.phases.verifyMs).toBeGreaterThan(0);
    }
    expect(await readFile(svg, "utf8")).toMatch(/^<svg/);
  });
});
