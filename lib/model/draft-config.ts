/**
 * config.json of an EAGLE-3 draft head in each published flavour (eagle3-reference.md §1.2): flat
 * Llama-style configs (SpecForge / sglang, SafeAILab EAGLE, AngelSlim, SpecJAX) and the speculators
 * format (layer fields nested in transformer_layer_config). Checked against the target. Anything
 * that would change what the draft computes and that the engine does not implement is refused; in
 * strict mode so is every field this parser does not know.
 */
import { PRETRAINED_BOOKKEEPING, readCheckpointJson, refuseUnknownFields } from "./json-file.js";
import { badCheckpoint, draftMismatch, unsupportedModel } from "../errors.js";
import { isObject } from "./safetensors.js";

/** How explicit aux-layer ids count: id j = output of layer j, or = input of layer j (output of j − 1). */
export type AuxLayerConvention = "output-of-layer" | "input-to-layer";
export type DraftFlavour = "sglang" | "eagle" | "angelslim" | "speculators" | "specjax";

/** Draft RoPE scaling, every parameter resolved as transformers resolves it. */
export type DraftRopeScaling =
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  | {
      type: "yarn";
      factor: number;
      originalMaxPositionEmbeddings: number;
      betaFast: number;
      betaSlow: number;
      /** Round the correction range to whole dimensions (transformers' default). */
      truncate: boolean;
      /** Multiplier of cos and sin: 0.1·ln(factor) + 1 (1 when factor ≤ 1). */
      attentionFactor: number;
    };

export interface DraftConfig {
  /** What produced the checkpoint, as far as the config tells; it decides the flavour-dependent defaults. */
  flavour: DraftFlavour;
  architectures: string[];
  hiddenSize: number;
  /** Width of each captured target feature (fc takes 3 of them). */
  targetHiddenSize: number;
  intermediateSize: number;
  numHeads: number;
  numKvHeads: number;
  /** May differ from hiddenSize / numHeads (SpecForge gpt-oss drafts). */
  headDim: number;
  numLayers: number;
  vocabSize: number;
  /** lm_head rows; vocabSize when the config names none, and then the target lm_head is used. */
  draftVocabSize: number;
  usesTargetLmHead: boolean;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: DraftRopeScaling | null;
  maxPositionEmbeddings: number;
  /** Target layers whose OUTPUT hidden states feed fc, low→high, after convention normalisation. */
  auxLayers: number[];
  auxLayersSource: "default" | "explicit";
  /** The convention explicit ids were read in (output-of-layer for the defaults). */
  auxConvention: AuxLayerConvention;
  /** The residual is taken after hidden_norm. */
  normBeforeResidual: boolean;
  /** One RMSNorm over the whole 3·Ht feature before fc (input_norm.weight). */
  normBeforeFc: boolean;
  /** One RMSNorm per Ht chunk before fc (fc_norm.{0,1,2}.weight, EAGLE-3.1). */
  fcNorm: boolean;
  /** Final norm before lm_head; whether the next draft step is fed the normed state instead of the pre-norm one. */
  normOutput: { applyFinalNorm: boolean; feedPostNorm: boolean };
  fcBias: boolean;
  /** Always true: EAGLE-1/2-style single-feature drafts are refused. */
  useAuxHiddenState: boolean;
  /** Attention window of the draft layer, in tokens; absent means full attention. */
  slidingWindow?: number;
  /** torch_dtype / dtype as written. */
  dtype?: string;
}

export interface DraftTarget {
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
}

export interface DraftConfigOptions {
  strict?: boolean;
  /** Overrides the convention the checkpoint family implies for explicit aux-layer ids. */
  auxConvention?: AuxLayerConvention;
}

export interface ParsedDraftConfig {
  config: DraftConfig;
  /** Fields neither used nor known to be inert; only non-strict parsing returns any. */
  ignoredFields: string[];
}

const FLAT_ARCHS: Record<string, DraftFlavour> = {
  LlamaForCausalLMEagle3: "sglang",
  LlamaForCausalLM: "eagle", // SafeAILab's own configs; SpecJAX writes it too (sglang-jax appends "Eagle3")
  Eagle3LlamaForCausalLM: "angelslim", // also vLLM's class name
};
const SPECULATORS_ARCHS = ["Eagle3Speculator", "Eagle3DraftModel"];

/** Fields that cannot change what the draft computes once the checks below pass. */
const INERT = new Set([
  "transformers_version",
  "use_cache",
  "initializer_range",
  "attention_dropout",
  "pretraining_tp", // splits matmuls in HF Llama: same product
  "bos_token_id",
  "eos_token_id",
  "pad_token_id",
  "target_model_type", // AngelSlim: names the target family only
  // speculators bookkeeping and training switches
  "speculators_version",
  "auto_map",
  "has_no_defaults_at_init",
  "embed_requires_grad",
  "enable_sp_ulysses",
  "base_model_ep_plan",
  "draft_attn_kernel",
  // PretrainedConfig bookkeeping that older transformers wrote out in full
  ...PRETRAINED_BOOKKEEPING,
  "is_encoder_decoder",
]);

/** One JSON object of the config, remembering what was read so that the rest can be reported. */
class Fields {
  private readonly used = new Set<string>();
  constructor(
    readonly json: Record<string, unknown>,
    readonly source: string,
    private readonly prefix = "",
  ) {}

  name(key: string): string {
    return this.prefix + key;
  }
  /** null means "not set" throughout, as it does for transformers. */
  get(key: string): unknown {
    this.used.add(key);
    return this.json[key] ?? undefined;
  }
  wrong(key: string, expected: string, v: unknown) {
    return badCheckpoint(`${this.source}: ${this.name(key)} must be ${expected}, got ${JSON.stringify(v)}`);
  }
  private required(key: string, v: unknown): unknown {
    if (v === undefined) throw badCheckpoint(`${this.source}: required field ${this.name(key)} is missing`);
    return v;
  }
  int(key: string, fallback?: number): number {
    const v = this.required(key, this.get(key) ?? fallback);
    if (!Number.isSafeInteger(v) || (v as number) <= 0) throw this.wrong(key, "a positive integer", v);
    return v as number;
  }
  num(key: string, fallback?: number): number {
    const v = this.required(key, this.get(key) ?? fallback);
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) throw this.wrong(key, "a positive number", v);
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.get(key) ?? fallback;
    if (typeof v !== "boolean") throw this.wrong(key, "true or false", v);
    return v;
  }
  child(key: string): Fields | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (!isObject(v)) throw this.wrong(key, "an object or null", v);
    return new Fields(v, this.source, `${this.name(key)}.`);
  }
  unknown(): string[] {
    return Object.entries(this.json)
      .filter(([k, v]) => v != null && !this.used.has(k) && !k.startsWith("_") && !INERT.has(k))
      .map(([k]) => this.name(k));
  }
}

/** Outputs of layers {1, L//2 − 1, L − 4}: where every trainer's defaults land (§2.1). */
export function defaultAuxLayers(numLayers: number): number[] {
  return [1, Math.floor(numLayers / 2) - 1, numLayers - 4];
}

export async function readDraftConfig(dir: string, target: DraftTarget, opts?: DraftConfigOptions): Promise<ParsedDraftConfig> {
  const { path, json } = await readCheckpointJson(dir, "config.json");
  return parseDraftConfig(json, path, target, opts);
}

/** `source` names the file in error messages. */
export function parseDraftConfig(
  json: unknown,
  source: string,
  target: DraftTarget,
  opts: DraftConfigOptions = {},
): ParsedDraftConfig {
  if (!isObject(json)) throw badCheckpoint(`${source}: not a JSON object`);
  const top = new Fields(json, source);
  const { flavour, architectures, layer, parts } = identify(top);

  const act = layer.get("hidden_act") ?? "silu";
  if (act !== "silu")
    throw unsupportedModel(`${source}: ${layer.name("hidden_act")} ${JSON.stringify(act)} is not supported (only "silu")`);
  const numLayers = layer.int("num_hidden_layers", 1); // absent in some SpecJAX exports; every trainer builds one layer
  if (numLayers !== 1)
    throw unsupportedModel(`${source}: ${layer.name("num_hidden_layers")} ${numLayers}: multi-layer drafts are not supported yet (only 1)`);
  for (const key of ["attention_bias", "mlp_bias", "qkv_bias"])
    if (layer.bool(key, false))
      throw unsupportedModel(`${source}: ${layer.name(key)} true is not supported (draft projections carry no bias)`);
  const tied = [top, layer].find((f) => f.bool("tie_word_embeddings", false));
  // AngelSlim copies the target's flag into its draft configs (qwen3-4b-eagle3.json) yet trains a
  // separate draft_vocab_size-row lm_head, and vLLM (whose class name it uses) never ties.
  if (tied && flavour !== "angelslim")
    throw unsupportedModel(
      `${source}: ${tied.name("tie_word_embeddings")} true is not supported: sglang then makes the draft lm_head the ` +
        `embedding, which the target's replaces, a vocab_size-row head that contradicts draft_vocab_size and d2t ` +
        `(eagle3-reference §6.6); set it to false if the checkpoint has its own lm_head.weight`,
    );

  const hiddenSize = layer.int("hidden_size");
  const numHeads = layer.int("num_attention_heads");
  const numKvHeads = layer.int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0)
    throw badCheckpoint(`${source}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const headDim = layer.int("head_dim", Math.floor(hiddenSize / numHeads));
  if (headDim % 2 !== 0) throw badCheckpoint(`${source}: head_dim ${headDim} is odd; RoPE needs an even head size`);
  const intermediateSize = layer.int("intermediate_size");
  const vocabSize = layer.int("vocab_size");
  const maxPositionEmbeddings = layer.int("max_position_embeddings", 2048); // LlamaConfig's default
  const rmsNormEps = layer.num("rms_norm_eps", 1e-6);
  const rope = parseRope(layer, maxPositionEmbeddings, parts);
  const slidingWindow = parseWindow(layer);

  const eagle = top.child("eagle_config");
  if (eagle) parts.push(eagle);
  if (!(eagle?.bool("use_aux_hidden_state", true) ?? true))
    throw unsupportedModel(
      `${source}: eagle_config.use_aux_hidden_state false (an EAGLE-1/2-style draft fed the final hidden state, no fc) is not supported`,
    );
  const speculators = flavour === "speculators";
  // vLLM's speculators adapter assumes true when absent (§2.6, §6.8); the others default to false.
  const normBeforeResidual = top.bool("norm_before_residual", speculators);
  // vLLM reads it from eagle_config for NVIDIA checkpoints (§6.8).
  const normBeforeFc = agreeFlags(source, [top, eagle], "norm_before_fc");
  const fcNorm = top.bool("fc_norm", false);
  // §2.6: SpecForge's norm_output (default true) = final norm before lm_head; speculators' (default
  // false) = feed the post-norm state to the next step.
  const normOutput = speculators
    ? { applyFinalNorm: true, feedPostNorm: top.bool("norm_output", false) }
    : { applyFinalNorm: top.bool("norm_output", true), feedPostNorm: false };
  const fcBias = top.bool("bias", false); // sglang: on fc only
  const newDtype = top.get("dtype") ?? layer.get("dtype");
  const dtype = newDtype ?? top.get("torch_dtype") ?? layer.get("torch_dtype");
  if (dtype !== undefined && typeof dtype !== "string")
    throw top.wrong(newDtype !== undefined ? "dtype" : "torch_dtype", "a string", dtype);

  // Against the target.
  const draftVocab = top.get("draft_vocab_size");
  const draftVocabSize = draftVocab === undefined ? vocabSize : top.int("draft_vocab_size");
  const targetHidden = top.get("target_hidden_size");
  const targetHiddenSize = targetHidden === undefined ? hiddenSize : top.int("target_hidden_size");
  if (vocabSize !== target.vocabSize)
    throw draftMismatch(`${source}: ${layer.name("vocab_size")} ${vocabSize} does not match the target's vocab_size ${target.vocabSize}`);
  if (targetHiddenSize !== target.hiddenSize) {
    const field = targetHidden === undefined ? `${layer.name("hidden_size")} (no target_hidden_size)` : "target_hidden_size";
    throw draftMismatch(`${source}: ${field} ${targetHiddenSize} does not match the target's hidden_size ${target.hiddenSize}`);
  }
  if (draftVocabSize > vocabSize)
    throw draftMismatch(`${source}: draft_vocab_size ${draftVocabSize} exceeds ${layer.name("vocab_size")} ${vocabSize}`);
  const aux = parseAux(top, eagle, flavour, target.numLayers, opts.auxConvention);

  const unknown = parts.flatMap((f) => f.unknown());
  refuseUnknownFields(source, unknown, opts.strict, "draft");

  return {
    config: {
      flavour,
      architectures,
      hiddenSize,
      targetHiddenSize,
      intermediateSize,
      numHeads,
      numKvHeads,
      headDim,
      numLayers,
      vocabSize,
      draftVocabSize,
      usesTargetLmHead: draftVocab === undefined,
      rmsNormEps,
      ropeTheta: rope.theta,
      ropeScaling: rope.scaling,
      maxPositionEmbeddings,
      ...aux,
      normBeforeResidual,
      normBeforeFc,
      fcNorm,
      normOutput,
      fcBias,
      useAuxHiddenState: true,
      ...(slidingWindow !== undefined && { slidingWindow }),
      ...(dtype !== undefined && { dtype: dtype as string }),
    },
    ignoredFields: unknown,
  };
}

/** The flavour, and where the layer fields live: speculators nests them, the others are flat. */
function identify(top: Fields): { flavour: DraftFlavour; architectures: string[]; layer: Fields; parts: Fields[] } {
  const source = top.source;
  const architectures = top.get("architectures") ?? [];
  if (!Array.isArray(architectures) || !architectures.every((a) => typeof a === "string"))
    throw top.wrong("architectures", "an array of strings", architectures);
  const nested = top.get("transformer_layer_config");
  const specType = top.get("speculators_model_type");
  const speculators = nested !== undefined || specType !== undefined || architectures.some((a) => SPECULATORS_ARCHS.includes(a));
  const accepted = speculators ? SPECULATORS_ARCHS : Object.keys(FLAT_ARCHS);
  const other = architectures.filter((a) => !accepted.includes(a));
  if (other.length || (!speculators && !architectures.length))
    throw unsupportedModel(
      `${source}: architectures ${other.join(", ") || "(none)"} is not an EAGLE-3 draft architecture this engine reads` +
        ` (${speculators ? "speculators format: " : ""}${accepted.join(", ")})`,
    );
  const modelType = (f: Fields, fallback?: string) => {
    const t = f.get("model_type") ?? fallback;
    if (t === undefined) throw badCheckpoint(`${source}: required field ${f.name("model_type")} is missing`);
    if (t !== "llama")
      throw unsupportedModel(`${source}: ${f.name("model_type")} ${JSON.stringify(t)} is not supported (drafts are "llama" layers)`);
  };
  if (!speculators) {
    modelType(top);
    // SpecJAX writes config.json with json.dump: no transformers_version, no hidden_act.
    const { transformers_version: version, hidden_act: act } = top.json;
    const specjax = architectures[0] === "LlamaForCausalLM" && version == null && act == null;
    return { flavour: specjax ? "specjax" : FLAT_ARCHS[architectures[0]], architectures, layer: top, parts: [top] };
  }
  if (specType !== undefined && specType !== "eagle3")
    throw unsupportedModel(`${source}: speculators_model_type ${JSON.stringify(specType)} is not supported (only "eagle3")`);
  const spec = top.get("speculators_config");
  if (spec !== undefined && !isObject(spec)) throw top.wrong("speculators_config", "an object", spec);
  if (spec?.algorithm != null && spec.algorithm !== "eagle3")
    throw unsupportedModel(`${source}: speculators_config.algorithm ${JSON.stringify(spec.algorithm)} is not supported (only "eagle3")`);
  const layer = top.child("transformer_layer_config");
  if (!layer) throw badCheckpoint(`${source}: required field transformer_layer_config is missing (speculators format)`);
  modelType(top, "llama");
  modelType(layer, "llama"); // LlamaConfig when absent
  return { flavour: "speculators", architectures, layer, parts: [top, layer] };
}

/**
 * The draft's own RoPE (§1.2: never the target's), from transformers 4 (`rope_theta`,
 * `rope_scaling`) or 5 (`rope_parameters`) spellings, which must agree where both are given.
 */
function parseRope(f: Fields, maxPositions: number, parts: Fields[]): { theta: number; scaling: DraftRopeScaling | null } {
  const source = f.source;
  const thetas: Array<[string, unknown]> = [[f.name("rope_theta"), f.get("rope_theta")]];
  const partial: Array<[string, unknown]> = [[f.name("partial_rotary_factor"), f.get("partial_rotary_factor")]];
  const scalings: Array<DraftRopeScaling | null> = [];
  for (const key of ["rope_scaling", "rope_parameters"]) {
    const d = f.child(key);
    if (!d) continue;
    parts.push(d);
    const [rt, t] = [d.get("rope_type"), d.get("type")];
    if (rt !== undefined && t !== undefined && rt !== t)
      throw badCheckpoint(`${source}: ${d.name("rope_type")} ${JSON.stringify(rt)} and ${d.name("type")} ${JSON.stringify(t)} disagree`);
    if (d.get("mrope_section") !== undefined)
      throw unsupportedModel(`${source}: ${d.name("mrope_section")} (multimodal RoPE) is not supported`);
    thetas.push([d.name("rope_theta"), d.get("rope_theta")]);
    partial.push([d.name("partial_rotary_factor"), d.get("partial_rotary_factor")]);
    scalings.push(ropeScaling(d, rt ?? t ?? "default", rt !== undefined ? "rope_type" : "type", maxPositions));
  }
  for (const [key, v] of partial)
    if (v !== undefined && v !== 1)
      throw unsupportedModel(`${source}: ${key} ${JSON.stringify(v)} (partial RoPE) is not supported for drafts`);
  if (scalings.length === 2 && JSON.stringify(scalings[0]) !== JSON.stringify(scalings[1]))
    throw badCheckpoint(`${source}: rope_scaling and rope_parameters describe different RoPE`);
  const set = thetas.filter(([, v]) => v !== undefined);
  for (const [key, v] of set)
    if (typeof v !== "number" || !(v > 0))
      throw badCheckpoint(`${source}: ${key} must be a positive number, got ${JSON.stringify(v)}`);
  const differ = set.find(([, v]) => v !== set[0][1]);
  if (differ) throw badCheckpoint(`${source}: ${set[0][0]} (${set[0][1]}) and ${differ[0]} (${differ[1]}) disagree`);
  // transformers' default when absent, as for the official Llama-3.1-8B draft (§1.2, §6.9).
  return { theta: (set[0]?.[1] as number | undefined) ?? 10000, scaling: scalings[0] ?? null };
}

/** The types whose frequencies are fixed numbers (dynamic NTK depends on the running length). */
function ropeScaling(d: Fields, type: unknown, typeKey: string, maxPositions: number): DraftRopeScaling | null {
  switch (type) {
    case "default":
      return null;
    case "linear":
      return { type, factor: d.num("factor") };
    case "llama3": {
      const r = {
        type,
        factor: d.num("factor"),
        lowFreqFactor: d.num("low_freq_factor"),
        highFreqFactor: d.num("high_freq_factor"),
        originalMaxPositionEmbeddings: d.int("original_max_position_embeddings"),
      } as const;
      if (r.highFreqFactor <= r.lowFreqFactor)
        throw badCheckpoint(`${d.source}: ${d.name("high_freq_factor")} must exceed ${d.name("low_freq_factor")}`);
      return r;
    }
    case "yarn": {
      // transformers multiplies cos/sin by these; sglang's and vLLM's yarn ignore them: no single reading.
      for (const key of ["attention_factor", "mscale", "mscale_all_dim"])
        if (d.get(key) !== undefined)
          throw unsupportedModel(`${d.source}: ${d.name(key)} is not supported (transformers applies it, sglang and vLLM ignore it)`);
      const factor = d.num("factor");
      return {
        type,
        factor,
        originalMaxPositionEmbeddings: d.int("original_max_position_embeddings", maxPositions),
        betaFast: d.num("beta_fast", 32),
        betaSlow: d.num("beta_slow", 1),
        truncate: d.bool("truncate", true),
        attentionFactor: factor <= 1 ? 1 : 0.1 * Math.log(factor) + 1,
      };
    }
    default:
      throw unsupportedModel(
        `${d.source}: ${d.name(typeKey)} ${JSON.stringify(type)} is not supported (draft RoPE: default, linear, llama3, yarn)`,
      );
  }
}

/** §2.6: a draft's own window is binding, but Qwen-derived configs carry the target's switched-off one. */
function parseWindow(f: Fields): number | undefined {
  f.get("max_window_layers"); // Qwen2's companion of use_sliding_window
  const window = f.get("sliding_window");
  const use = f.get("use_sliding_window");
  if (use !== undefined && typeof use !== "boolean") throw f.wrong("use_sliding_window", "true or false", use);
  if (use)
    throw unsupportedModel(`${f.source}: ${f.name("use_sliding_window")} true (Qwen2-style per-layer windows) is not supported for drafts`);
  const types = f.get("layer_types");
  if (types !== undefined) {
    if (!Array.isArray(types) || types.length !== 1) throw f.wrong("layer_types", "an array of 1 layer type", types);
    if (types[0] === "full_attention") return undefined;
    if (types[0] !== "sliding_attention")
      throw unsupportedModel(`${f.source}: ${f.name("layer_types")} ${JSON.stringify(types[0])} is not supported`);
    return f.int("sliding_window");
  }
  return use === false || window === undefined ? undefined : f.int("sliding_window");
}

/** A flag that may be written at the top level and in eagle_config; where both are, they must agree. */
function agreeFlags(source: string, places: Array<Fields | undefined>, key: string): boolean {
  const set = places.filter((f): f is Fields => f?.get(key) !== undefined);
  const values = set.map((f) => f.bool(key, false));
  if (values.some((v) => v !== values[0]))
    throw badCheckpoint(`${source}: ${set[0].name(key)} (${values[0]}) and ${set[1].name(key)} (${values[1]}) disagree`);
  return values[0] ?? false;
}

/**
 * Which target layers feed fc, as outputs of layers (§2.1). Explicit ids follow the checkpoint
 * family's convention: output-of-layer for SpecForge / sglang / AngelSlim / SpecJAX, which write
 * eagle_config.eagle_aux_hidden_state_layer_ids; input-to-layer for speculators and vLLM, which
 * write the top-level field (so a flat config holding only that one is read as vLLM reads it).
 */
function parseAux(
  top: Fields,
  eagle: Fields | undefined,
  flavour: DraftFlavour,
  numLayers: number,
  override: AuxLayerConvention | undefined,
): Pick<DraftConfig, "auxLayers" | "auxLayersSource" | "auxConvention"> {
  const source = top.source;
  const key = "eagle_aux_hidden_state_layer_ids";
  const found = [eagle, top].filter((f): f is Fields => f?.get(key) !== undefined);
  const check = (layers: number[], what: string) => {
    if (layers.length !== 3 || !layers.every((l, i) => l >= 0 && l < numLayers - 1 && (i === 0 || l > layers[i - 1])))
      throw draftMismatch(
        `${source}: ${what} must be 3 ascending target layers in 0..${numLayers - 2} (the target has ${numLayers} ` +
          `layers; the output of the last one is not captured)`,
      );
    return layers;
  };
  if (!found.length) {
    const layers = defaultAuxLayers(numLayers);
    const what = `the default aux layers {1, L//2 − 1, L − 4} = [${layers.join(", ")}] for L = ${numLayers}`;
    return { auxLayers: check(layers, what), auxLayersSource: "default", auxConvention: "output-of-layer" };
  }
  const [field, ids] = [found[0].name(key), found[0].get(key)];
  if (!Array.isArray(ids) || !ids.every((id) => Number.isSafeInteger(id) && id >= 0))
    throw found[0].wrong(key, "an array of layer ids", ids);
  if (found[1] && JSON.stringify(found[1].get(key)) !== JSON.stringify(ids))
    throw badCheckpoint(`${source}: ${field} and ${found[1].name(key)} disagree`);
  const convention = override ?? (flavour === "speculators" || found[0] === top ? "input-to-layer" : "output-of-layer");
  let layers = ids as number[];
  let what = `${field} [${layers.join(", ")}] (${convention})`;
  if (convention === "input-to-layer") {
    if (layers.includes(0))
      throw unsupportedModel(`${source}: ${what} names id 0, the embedding output, which this engine does not capture`);
    layers = layers.map((id) => id - 1);
    what += `, i.e. outputs of layers [${layers.join(", ")}],`;
  }
  return { auxLayers: check(layers, what), auxLayersSource: "explicit", auxConvention: convention };
}
