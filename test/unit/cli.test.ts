/** The eagle3 command as a user runs it: the built CLI in a child process, on the CPU. */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { FIXTURES } from "../helpers/golden.js";

const run = promisify(execFile);
const cli = join(import.meta.dirname, "..", "..", "bin", "eagle3.js");

async function eagle3(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("eagle3 CLI", () => {
  it("generate streams text from the embedded default on the CPU", async () => {
    const r = await eagle3("generate", "--chat", "Hello", "--max-tokens", "12", "--device", "cpu", "--ignore-eos");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
  });

  it("generate --json reports tokens, text and timings, greedy and deterministic", async () => {
    const a = await eagle3("generate", "--prompt", "The eagle", "--max-tokens", "8", "--device", "cpu", "--ignore-eos", "--json");
    const b = await eagle3("generate", "--prompt", "The eagle", "--max-tokens", "8", "--device", "cpu", "--ignore-eos", "--json");
    expect(a.code, a.stderr).toBe(0);
    const ja = JSON.parse(a.stdout), jb = JSON.parse(b.stdout);
    expect(ja.tokens).toHaveLength(8);
    expect(ja.tokens).toEqual(jb.tokens);
    expect(ja.finishReason).toBe("length");
    expect(ja.device).toBe("cpu");
    expect(typeof ja.text).toBe("string");
    expect(ja.timings.totalMs).toBeGreaterThan(0);
  });

  it("inspect describes a sharded checkpoint and says it loads", async () => {
    const r = await eagle3("inspect", join(FIXTURES, "qwen2-tiny"), "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.config.arch).toBe("qwen2");
    expect(j.checkpoint.sharded).toBe(true);
    expect(j.checkpoint.files).toHaveLength(3);
    expect(j.load.ok).toBe(true);
  });

  it("inspect --target reads a draft head as it would load beside its target: flavour, feature layers, vocabulary map", async () => {
    const r = await eagle3("inspect", join(FIXTURES, "eagle3-qwen3-tiny-bin"), "--target", join(FIXTURES, "qwen3-tiny"), "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.draft.flavour).toBe("eagle");
    expect(j.draft.auxLayers).toEqual([0, 1, 2]);
    expect(j.checkpoint.files).toEqual(["pytorch_model.bin"]);
    expect(j.load).toMatchObject({ ok: true, ownEmbedding: false, vocabMap: "128 draft ids onto the target's 512" });
    const text = await eagle3("inspect", join(FIXTURES, "eagle3-qwen3-tiny"), "--target", join(FIXTURES, "qwen3-tiny"));
    expect(text.stdout).toMatch(/features {4}target layers 0, 1, 2/);
    expect(text.stdout).toMatch(/loads {7}yes/);
  });

  it("inspect --target exits 1 naming the field a draft and its target disagree on", async () => {
    const r = await eagle3("inspect", join(FIXTURES, "eagle3-qwen3-tiny"), "--target", join(FIXTURES, "qwen2-tiny"));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/ERR_DRAFT_MISMATCH: .*vocab_size 512 does not match the target's vocab_size 384/);
  });

  it("inspect exits 1 with the coded error for a directory that is no checkpoint", async () => {
    const r = await eagle3("inspect", FIXTURES);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/ERR_BAD_CHECKPOINT: .*config\.json/);
  });

  it("env says plainly whether a GPU can be used", async () => {
    const r = await eagle3("env", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(typeof j.build.cuda).toBe("boolean");
    if (j.cuda.gpus.length === 0) expect(j.cuda.error).toMatch(/\S/);
  });

  it("usage errors exit 2 and name the problem", async () => {
    const r = await eagle3("generate", "--prompt", "a", "--chat", "b");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/one of --prompt, --chat, --messages/);
    expect((await eagle3("frobnicate")).code).toBe(2);
    const repeats = await eagle3("bench", "--model", "m", "--draft", "d", "--repeats", "0");
    expect(repeats.code).toBe(2);
    expect(repeats.stderr).toMatch(/--repeats must be a whole number of at least 1, got 0/);
    const runSteps = await eagle3("bench", "--model", "m", "--draft", "d", "--run-steps", "2.5");
    expect(runSteps.code).toBe(2);
    expect(runSteps.stderr).toMatch(/--run-steps must be a whole number of at least 1, got 2.5/);
  });
});
