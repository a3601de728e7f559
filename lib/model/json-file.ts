/** A checkpoint's JSON file (config.json and friends) with coded errors naming the path. */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { badCheckpoint, unsupportedModel } from "../errors.js";

export async function readCheckpointJson(dir: string, name: string): Promise<{ path: string; json: unknown }> {
  const path = join(resolve(dir), name);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw badCheckpoint(code === "ENOENT" ? `${path}: no such file` : `${path}: cannot be read (${code ?? err})`, err);
  }
  try {
    return { path, json: JSON.parse(text) };
  } catch (err) {
    throw badCheckpoint(`${path}: not valid JSON (${(err as Error).message})`, err);
  }
}

/** Strict parsing refuses config fields it does not know: they may change what `subject` computes. */
export function refuseUnknownFields(source: string, unknown: string[], strict: boolean | undefined, subject: string): void {
  if (unknown.length && (strict ?? true))
    throw unsupportedModel(
      `${source}: unknown config field(s) ${unknown.join(", ")} may change what the ${subject} computes; ` +
        `load with strictConfig: false to ignore them`,
    );
}

/** Config fields every transformers PretrainedConfig used to write out: bookkeeping, inert for inference. */
export const PRETRAINED_BOOKKEEPING = [
  "output_attentions",
  "output_hidden_states",
  "return_dict",
  "torchscript",
  "use_bfloat16",
  "tf_legacy_loss",
  "chunk_size_feed_forward",
  "is_decoder",
  "id2label",
  "label2id",
  "problem_type",
  "finetuning_task",
  "tokenizer_class",
  "prefix",
  "sep_token_id",
  "decoder_start_token_id",
  "task_specific_params",
];
