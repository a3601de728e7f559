/** Opening an EAGLE-3 draft directory: its config checked against the target, its weights planned. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { badCheckpoint } from "../errors.js";
import { openCheckpoint } from "./checkpoint.js";
import type { TargetConfig } from "./config.js";
import { type AuxLayerConvention, readDraftConfig } from "./draft-config.js";
import { normalizeDraftNames, planDraftWeights } from "./draft-weights.js";
import type { DraftAttachment } from "./target.js";
import { readTorchBin } from "./torch-bin.js";
import type { TensorSource } from "./weight-plan.js";

export interface DraftLoadOptions {
  strictConfig?: boolean;
  auxConvention?: AuxLayerConvention;
}

/** safetensors (single or sharded) first, else pytorch_model.bin through the restricted reader. */
export async function openDraftTensors(dir: string): Promise<TensorSource> {
  if (existsSync(join(dir, "model.safetensors")) || existsSync(join(dir, "model.safetensors.index.json")))
    return normalizeDraftNames(await openCheckpoint(dir));
  const bin = join(dir, "pytorch_model.bin");
  if (existsSync(bin)) return normalizeDraftNames({ dir, tensors: (await readTorchBin(bin)).tensors });
  throw badCheckpoint(`${dir}: no draft weights (looked for model.safetensors, model.safetensors.index.json and pytorch_model.bin)`);
}

export async function openDraft(dir: string, target: TargetConfig, slots: number, o: DraftLoadOptions = {}): Promise<DraftAttachment> {
  const { config } = await readDraftConfig(dir, target, { strict: o.strictConfig ?? true, auxConvention: o.auxConvention });
  const plan = await planDraftWeights(config, await openDraftTensors(dir));
  return { dir, config, plan, slots };
}
