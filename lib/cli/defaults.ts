/** The embedded default: a small random Qwen3 checkpoint with the full vocabulary, committed under
 * test/fixtures and driven by the real Qwen3 tokenizer, so the CLI runs with no download and no GPU. */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Eagle3Error, ErrorCode } from "../errors.js";
import { qwen3TokenizerDir } from "../tokenizer/qwen3-tokenizer-dir.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const DEFAULT_MODEL_DIR = join(root, "test", "fixtures", "qwen3-vocab");

export function defaultModel(): { model: string; tokenizer: string } {
  if (!existsSync(join(DEFAULT_MODEL_DIR, "config.json")))
    throw new Eagle3Error(ErrorCode.INVALID_ARGUMENT, `no --model given and the embedded fixture ${DEFAULT_MODEL_DIR} is absent`);
  return { model: DEFAULT_MODEL_DIR, tokenizer: qwen3TokenizerDir() };
}
