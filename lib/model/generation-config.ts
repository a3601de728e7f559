/** generation_config.json: the checkpoint's stop ids (used when no tokenizer is loaded). */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { badCheckpoint } from "../errors.js";

export async function readEosTokenIds(dir: string): Promise<number[]> {
  const file = join(dir, "generation_config.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return [];
  }
  let eos: unknown;
  try {
    eos = (JSON.parse(text) as { eos_token_id?: unknown }).eos_token_id;
  } catch (e) {
    throw badCheckpoint(`${file} is not valid JSON: ${(e as Error).message}`, e);
  }
  if (eos === undefined || eos === null) return [];
  const ids = Array.isArray(eos) ? eos : [eos];
  if (!ids.every((id) => Number.isInteger(id) && id >= 0))
    throw badCheckpoint(`${file}: eos_token_id must be a token id or a list of them, not ${JSON.stringify(eos)}`);
  return ids as number[];
}
