/** Evaluation prompts (bench/data: MT-Bench, HumanEval, GSM8K) or any JSONL file. */
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { invalidArgument } from "../errors.js";

export const DATASETS = ["mtbench", "humaneval", "gsm8k"] as const;
const dataDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "data");

/** The first user prompt of each record: turns[0], prompt, question or text. */
export async function loadPrompts(nameOrFile: string, limit: number): Promise<string[]> {
  const file = (DATASETS as readonly string[]).includes(nameOrFile) ? join(dataDir, `${nameOrFile}.jsonl`) : nameOrFile;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw invalidArgument(`dataset ${nameOrFile}: cannot read ${file} (${(e as Error).message}); known: ${DATASETS.join(", ")} or a .jsonl file`);
  }
  const prompts: string[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim() || prompts.length >= limit) continue;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line);
    } catch {
      throw invalidArgument(`${file}:${i + 1} is not JSON`);
    }
    const p = (Array.isArray(r.turns) ? r.turns[0] : undefined) ?? r.prompt ?? r.question ?? r.text;
    if (typeof p !== "string") throw invalidArgument(`${file}:${i + 1} has no turns[0], prompt, question or text string`);
    prompts.push(p);
  }
  if (!prompts.length) throw invalidArgument(`${file} holds no prompts`);
  return prompts;
}
