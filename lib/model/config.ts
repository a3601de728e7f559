/**
 * config.json of a dense Qwen2 / Qwen3 target, read as transformers reads it. Anything that would
 * change what the model computes and that the engine does not implement is refused, never ignored;
 * in strict mode so is every field this parser does not know.
 */
import { PRETRAINED_BOOKKEEPING, readCheckpointJson, refuseUnknownFields } from "./json-file.js";
import { badCheckpoint, unsupportedModel } from "../errors.js";
import { isObject } from "./safetensors.js";

export type TargetArch = "qwen2" | "qwen3";

export interface TargetConfig {
  arch: TargetArch;
  architectures: string[];
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Leading dimensions of each head that RoPE rotates (headDim unless partial_rotary_factor). */
  rotaryDim: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias: always for Qwen2, with attention_bias for Qwen3. */
  attentionBias: boolean;
  /** o_proj carries a bias: Qwen3 with attention_bias only. */
  oBias: boolean;
  /** RMSNorm of q and k per head (Qwen3). */
  qkNorm: boolean;
  bosTokenId?: number;
  eosTokenIds: number[];
  /** torch_dtype / dtype as written, e.g. "bfloat16"; absent when the config names none. */
  dtype?: string;
}

export interface ParsedConfig {
  config: TargetConfig;
  /** Fields neither used nor known to be inert; only non-strict parsing returns any. */
  ignoredFields: string[];
}

const ARCHITECTURE: Record<TargetArch, string> = { qwen2: "Qwen2ForCausalLM", qwen3: "Qwen3ForCausalLM" };

/** Fields that cannot change the logits once the checks below pass. */
const INERT = new Set([
  "transformers_version",
  "use_cache",
  "initializer_range",
  "attention_dropout",
  "pad_token_id",
  // Read only by sliding-window attention, which is refused.
  "sliding_window",
  "max_window_layers",
  // PretrainedConfig bookkeeping that older transformers wrote out in full.
  ...PRETRAINED_BOOKKEEPING,
  // Generation defaults once kept in config.json: they shape sampling, not the model.
  "max_length",
  "min_length",
  "do_sample",
  "early_stopping",
  "num_beams",
  "num_beam_groups",
  "diversity_penalty",
  "temperature",
  "top_k",
  "top_p",
  "typical_p",
  "repetition_penalty",
  "length_penalty",
  "no_repeat_ngram_size",
  "encoder_no_repeat_ngram_size",
  "bad_words_ids",
  "num_return_sequences",
  "output_scores",
  "return_dict_in_generate",
  "forced_bos_token_id",
  "forced_eos_token_id",
  "remove_invalid_values",
  "exponential_decay_length_penalty",
  "suppress_tokens",
  "begin_suppress_tokens",
]);

/** Fields that are inert only at this value. */
const INERT_AT: Record<string, (v: unknown) => boolean> = {
  use_mrope: (v) => v === false,
  is_encoder_decoder: (v) => v === false,
  add_cross_attention: (v) => v === false,
  tie_encoder_decoder: (v) => v === false,
  pruned_heads: (v) => isObject(v) && Object.keys(v).length === 0,
};

export async function readTargetConfig(dir: string, opts?: { strict?: boolean }): Promise<ParsedConfig> {
  const { path, json } = await readCheckpointJson(dir, "config.json");
  return parseTargetConfig(json, path, opts);
}

/** `source` names the file in error messages. */
export function parseTargetConfig(json: unknown, source: string, opts: { strict?: boolean } = {}): ParsedConfig {
  if (!isObject(json)) throw badCheckpoint(`${source}: not a JSON object`);
  const used = new Set<string>();
  // null means "not set" throughout, as it does for transformers.
  const get = (key: string): unknown => {
    used.add(key);
    return json[key] ?? undefined;
  };
  const wrong = (key: string, expected: string, v: unknown) =>
    badCheckpoint(`${source}: ${key} must be ${expected}, got ${JSON.stringify(v)}`);
  const int = (key: string, fallback?: number): number => {
    const v = get(key) ?? fallback;
    if (v === undefined) throw badCheckpoint(`${source}: required field ${key} is missing`);
    if (!Number.isSafeInteger(v) || (v as number) <= 0) throw wrong(key, "a positive integer", v);
    return v as number;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = get(key) ?? fallback;
    if (typeof v !== "boolean") throw wrong(key, "true or false", v);
    return v;
  };

  const modelType = get("model_type");
  if (modelType === undefined) throw badCheckpoint(`${source}: required field model_type is missing`);
  if (typeof modelType !== "string") throw wrong("model_type", "a string", modelType);
  const architectures = get("architectures") ?? [];
  if (!Array.isArray(architectures) || !architectures.every((a) => typeof a === "string"))
    throw wrong("architectures", "an array of strings", architectures);
  if (modelType !== "qwen2" && modelType !== "qwen3")
    throw unsupportedModel(
      `${source}: model_type "${modelType}" (architectures: ${architectures.join(", ") || "none"}) is not supported; ` +
        `supported: qwen2 (Qwen2ForCausalLM), qwen3 (Qwen3ForCausalLM)`,
    );
  const arch: TargetArch = modelType;
  const other = architectures.filter((a) => a !== ARCHITECTURE[arch]);
  if (other.length)
    throw unsupportedModel(
      `${source}: architectures ${other.join(", ")} is not supported for model_type ${arch} (only ${ARCHITECTURE[arch]})`,
    );

  const quant = get("quantization_config");
  if (quant !== undefined) {
    const method = isObject(quant) && typeof quant.quant_method === "string" ? ` (quant_method "${quant.quant_method}")` : "";
    throw unsupportedModel(`${source}: quantization_config${method} is present; quantized checkpoints are not supported`);
  }
  const act = get("hidden_act") ?? "silu";
  if (act !== "silu") throw unsupportedModel(`${source}: hidden_act ${JSON.stringify(act)} is not supported (only "silu")`);
  if (bool("use_sliding_window", false))
    throw unsupportedModel(`${source}: use_sliding_window true (sliding-window attention) is not supported`);

  const hiddenSize = int("hidden_size");
  const numLayers = int("num_hidden_layers");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0)
    throw badCheckpoint(`${source}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  // Qwen2Config has no head_dim (transformers then uses hidden // heads); Qwen3Config defaults it to 128.
  const headDim = int("head_dim", arch === "qwen2" ? Math.floor(hiddenSize / numHeads) : 128);
  if (headDim % 2 !== 0) throw badCheckpoint(`${source}: head_dim ${headDim} is odd; RoPE needs an even head size`);
  const intermediateSize = int("intermediate_size");
  const vocabSize = int("vocab_size");
  const maxPositionEmbeddings = int("max_position_embeddings", 32768);
  const rmsNormEps = get("rms_norm_eps") ?? 1e-6;
  if (typeof rmsNormEps !== "number" || !(rmsNormEps > 0)) throw wrong("rms_norm_eps", "a positive number", rmsNormEps);

  const layerTypes = get("layer_types");
  if (layerTypes !== undefined) {
    if (!Array.isArray(layerTypes) || layerTypes.length !== numLayers)
      throw wrong("layer_types", `an array of ${numLayers} layer types`, layerTypes);
    const odd = layerTypes.find((t) => t !== "full_attention");
    if (odd !== undefined)
      throw unsupportedModel(`${source}: layer_types contains ${JSON.stringify(odd)}; only "full_attention" is supported`);
  }

  const unknown: string[] = [];
  const rope = parseRope(source, get, headDim, unknown);
  const bias = arch === "qwen3" && bool("attention_bias", false);
  const bos = get("bos_token_id");
  if (bos !== undefined && !isTokenId(bos)) throw wrong("bos_token_id", "a token id", bos);
  const eos = get("eos_token_id") ?? [];
  const eosTokenIds = Array.isArray(eos) ? eos : [eos];
  if (!eosTokenIds.every(isTokenId)) throw wrong("eos_token_id", "a token id or an array of them", eos);
  const tieWordEmbeddings = bool("tie_word_embeddings", false);
  // transformers 5 writes dtype, 4 wrote torch_dtype; 5 reads dtype first.
  const [newDtype, oldDtype] = [get("dtype"), get("torch_dtype")];
  const dtype = newDtype ?? oldDtype;
  if (dtype !== undefined && typeof dtype !== "string")
    throw wrong(newDtype !== undefined ? "dtype" : "torch_dtype", "a string", dtype);

  for (const [key, v] of Object.entries(json))
    if (v !== null && !used.has(key) && !key.startsWith("_") && !INERT.has(key) && !INERT_AT[key]?.(v)) unknown.push(key);
  refuseUnknownFields(source, unknown, opts.strict, "model");

  return {
    config: {
      arch,
      architectures,
      hiddenSize,
      numLayers,
      numHeads,
      numKvHeads,
      headDim,
      intermediateSize,
      vocabSize,
      rmsNormEps,
      ropeTheta: rope.theta,
      rotaryDim: rope.rotaryDim,
      maxPositionEmbeddings,
      tieWordEmbeddings,
      attentionBias: arch === "qwen2" || bias,
      oBias: bias,
      qkNorm: arch === "qwen3",
      bosTokenId: bos as number | undefined,
      eosTokenIds: eosTokenIds as number[],
      dtype: dtype as string | undefined,
    },
    ignoredFields: unknown,
  };
}

/**
 * RoPE from either spelling: transformers 4 (`rope_theta`, `rope_scaling`, `partial_rotary_factor`)
 * or transformers 5 (`rope_parameters` holding them). Only the default, unscaled type is supported.
 */
function parseRope(
  source: string,
  get: (key: string) => unknown,
  headDim: number,
  unknown: string[],
): { theta: number; rotaryDim: number } {
  const thetas: Array<[string, unknown]> = [["rope_theta", get("rope_theta")]];
  const factors: Array<[string, unknown]> = [["partial_rotary_factor", get("partial_rotary_factor")]];
  for (const key of ["rope_scaling", "rope_parameters"]) {
    const dict = get(key);
    if (dict === undefined) continue;
    if (!isObject(dict)) throw badCheckpoint(`${source}: ${key} must be an object or null, got ${JSON.stringify(dict)}`);
    const typeKey = dict.rope_type !== undefined ? "rope_type" : "type";
    const type = dict[typeKey] ?? "default";
    if (type !== "default")
      throw unsupportedModel(`${source}: ${key}.${typeKey} ${JSON.stringify(type)} is not supported (only default RoPE)`);
    for (const [k, v] of Object.entries(dict)) {
      if (k === "rope_theta") thetas.push([`${key}.rope_theta`, v]);
      else if (k === "partial_rotary_factor") factors.push([`${key}.partial_rotary_factor`, v]);
      else if (k !== "rope_type" && k !== "type") unknown.push(`${key}.${k}`);
    }
  }
  const theta = agree(source, thetas, (v) => typeof v === "number" && v > 0, "a positive number") ?? 10000;
  const factor = agree(source, factors, (v) => typeof v === "number" && v > 0 && v <= 1, "a number in (0, 1]") ?? 1;
  const rotaryDim = Math.floor(headDim * factor);
  if (rotaryDim === 0 || rotaryDim % 2 !== 0)
    throw badCheckpoint(
      `${source}: partial_rotary_factor ${factor} gives ${rotaryDim} rotary dimensions of ${headDim}; ` +
        `RoPE needs an even, non-zero number`,
    );
  return { theta, rotaryDim };
}

/** The one value that every place setting this parameter gives (undefined where none does). */
function agree(
  source: string,
  found: Array<[string, unknown]>,
  ok: (v: unknown) => boolean,
  expected: string,
): number | undefined {
  const set = found.filter(([, v]) => v !== undefined && v !== null);
  for (const [key, v] of set)
    if (!ok(v)) throw badCheckpoint(`${source}: ${key} must be ${expected}, got ${JSON.stringify(v)}`);
  const differ = set.find(([, v]) => v !== set[0][1]);
  if (differ)
    throw badCheckpoint(`${source}: ${set[0][0]} (${set[0][1]}) and ${differ[0]} (${differ[1]}) disagree`);
  return set[0]?.[1] as number | undefined;
}

const isTokenId = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
