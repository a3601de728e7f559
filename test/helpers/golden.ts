/** Reads the transformers goldens of test/fixtures (made by test/fixtures/make_fixtures.py). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensorsHeader } from "../../lib/model/safetensors.js";

export const FIXTURES = join(import.meta.dirname, "..", "fixtures");

export interface GoldenPrompt {
  ids: number[];
  greedy_f32: number[];
  greedy_bf16: number[];
}

export interface Golden {
  dir: string;
  transformers: string;
  newTokens: number;
  prompts: GoldenPrompt[];
  /** "p{i}.f32.logits" [T or 1, V], "p{i}.bf16.logits", "p{i}.hidden" [L, T, H] */
  tensor(name: string): { shape: number[]; data: Float32Array };
}

/** A fixture name under test/fixtures, or a directory the GPU machine made. */
export async function readGolden(model: string): Promise<Golden> {
  const dir = model.includes("/") ? model : join(FIXTURES, model);
  const meta = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8"));
  const file = join(dir, "golden.safetensors");
  const header = await readSafetensorsHeader(file);
  const bytes = readFileSync(file);
  return {
    dir,
    transformers: meta.transformers,
    newTokens: meta.new_tokens,
    prompts: meta.prompts,
    tensor(name) {
      const e = header.tensors.get(name);
      if (!e || e.dtype !== "f32") throw new Error(`golden tensor ${name} missing or not f32`);
      const copy = bytes.subarray(e.dataOffset, e.dataOffset + e.byteLength);
      return { shape: e.shape, data: new Float32Array(copy.buffer.slice(copy.byteOffset, copy.byteOffset + copy.byteLength)) };
    },
  };
}

/** max |a − b| / max |b|: the "within x relative" measure of the goldens. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}
