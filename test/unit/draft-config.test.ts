import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { expectThrows } from "../helpers/coded-errors.js";
import { type DraftTarget, defaultAuxLayers, parseDraftConfig, readDraftConfig } from "../../lib/model/draft-config.js";

const SRC = "/drafts/x/config.json";
const BAD = "ERR_BAD_CHECKPOINT";
const UNSUPPORTED = "ERR_UNSUPPORTED_MODEL";
const MISMATCH = "ERR_DRAFT_MISMATCH";

// Targets as parseTargetConfig returns them (only the numbers the draft is checked against).
const LLAMA31_8B: DraftTarget = { numLayers: 32, hiddenSize: 4096, vocabSize: 128256 };
const LLAMA33_70B: DraftTarget = { numLayers: 80, hiddenSize: 8192, vocabSize: 128256 };
const QWEN3_8B: DraftTarget = { numLayers: 36, hiddenSize: 4096, vocabSize: 151936 };
const QWEN3_4B: DraftTarget = { numLayers: 36, hiddenSize: 2560, vocabSize: 151936 };
const GPT_OSS_20B: DraftTarget = { numLayers: 24, hiddenSize: 2880, vocabSize: 201088 };

// SpecForge configs/llama3-8B-eagle3.json.
const SPECFORGE_LLAMA3_8B = {
  architectures: ["LlamaForCausalLMEagle3"],
  bos_token_id: 128000,
  eos_token_id: 128001,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 2048,
  model_type: "llama",
  num_attention_heads: 32,
  num_key_value_heads: 8,
  num_hidden_layers: 1,
  pad_token_id: 0,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  torch_dtype: "float16",
  transformers_version: "4.28.1",
  use_cache: true,
  vocab_size: 128256,
  draft_vocab_size: 32000,
};

// The official yuhuili/EAGLE3-LLaMA3.1-Instruct-8B config: the same fields, the plain Llama class.
const YUHUILI_LLAMA31_8B = { ...SPECFORGE_LLAMA3_8B, architectures: ["LlamaForCausalLM"] };

// SpecForge configs/qwen3-8b-eagle3.json.
const SPECFORGE_QWEN3_8B = {
  architectures: ["LlamaForCausalLMEagle3"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 12288,
  max_position_embeddings: 40960,
  max_window_layers: 36,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 1,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.51.0",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
  draft_vocab_size: 32000,
};

// AngelSlim configs/qwen3-4b-eagle3.json (tie_word_embeddings copied from the Qwen3-4B target).
const ANGELSLIM_QWEN3_4B = {
  architectures: ["Eagle3LlamaForCausalLM"],
  model_type: "llama",
  target_model_type: "qwen3",
  torch_dtype: "bfloat16",
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 2560,
  initializer_range: 0.02,
  intermediate_size: 9728,
  max_position_embeddings: 40960,
  max_window_layers: 36,
  num_attention_heads: 32,
  num_hidden_layers: 1,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  transformers_version: "4.51.0",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
  draft_vocab_size: 32000,
};

// A vLLM speculators Eagle3Speculator config for Llama-3.1-8B (ids in the input-to-layer convention).
const SPECULATORS_LLAMA31_8B = {
  architectures: ["Eagle3Speculator"],
  auto_map: { "": "eagle3.Eagle3SpeculatorConfig" },
  draft_vocab_size: 32000,
  eagle_aux_hidden_state_layer_ids: [2, 16, 29],
  has_no_defaults_at_init: false,
  norm_before_residual: true,
  speculators_config: {
    algorithm: "eagle3",
    default_proposal_method: "greedy",
    proposal_methods: [{ accept_tolerance: 0.0, proposal_type: "greedy", speculative_tokens: 3, verifier_accept_k: 1 }],
    verifier: { architectures: ["LlamaForCausalLM"], name_or_path: "meta-llama/Llama-3.1-8B-Instruct" },
  },
  speculators_model_type: "eagle3",
  speculators_version: "0.3.0",
  target_hidden_size: null,
  torch_dtype: "bfloat16",
  transformer_layer_config: {
    attention_bias: false,
    attention_dropout: 0.0,
    head_dim: 128,
    hidden_act: "silu",
    hidden_size: 4096,
    initializer_range: 0.02,
    intermediate_size: 14336,
    max_position_embeddings: 131072,
    mlp_bias: false,
    model_type: "llama",
    num_attention_heads: 32,
    num_hidden_layers: 1,
    num_key_value_heads: 8,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: { factor: 8.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
    rope_theta: 500000.0,
    use_cache: true,
    vocab_size: 128256,
  },
  transformers_version: "4.55.0",
};

// What SpecJAX's save_eagle3_checkpoint writes (json.dump, no transformers_version or hidden_act).
const SPECJAX_QWEN3_8B = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 4096,
  intermediate_size: 12288,
  num_hidden_layers: 1,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 128,
  vocab_size: 151936,
  draft_vocab_size: 32000,
  rope_theta: 1000000.0,
  rms_norm_eps: 1e-6,
  torch_dtype: "bfloat16",
  tie_word_embeddings: false,
};

const without = (json: Record<string, unknown>, ...keys: string[]) =>
  Object.fromEntries(Object.entries(json).filter(([k]) => !keys.includes(k)));
const sf = (patch: Record<string, unknown>) => ({ ...SPECFORGE_QWEN3_8B, ...patch });
const spec = (patch: Record<string, unknown>, layer: Record<string, unknown> = {}) => ({
  ...SPECULATORS_LLAMA31_8B,
  ...patch,
  transformer_layer_config: { ...SPECULATORS_LLAMA31_8B.transformer_layer_config, ...layer },
});
const parse = (json: unknown, target = QWEN3_8B, opts?: Parameters<typeof parseDraftConfig>[3]) =>
  parseDraftConfig(json, SRC, target, opts);

/** Asserts that `fn` throws `code` with a message containing the file and every fragment. */
const throws = (fn: () => unknown, code: string, ...fragments: string[]) => expectThrows(fn, code, SRC, ...fragments);

describe("parseDraftConfig: published flavours", () => {
  it("parses SpecForge's llama3-8B draft", () => {
    const { config, ignoredFields } = parse(SPECFORGE_LLAMA3_8B, LLAMA31_8B);
    expect(ignoredFields).toEqual([]);
    expect(config).toEqual({
      flavour: "sglang",
      architectures: ["LlamaForCausalLMEagle3"],
      hiddenSize: 4096,
      targetHiddenSize: 4096,
      intermediateSize: 14336,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      numLayers: 1,
      vocabSize: 128256,
      draftVocabSize: 32000,
      usesTargetLmHead: false,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeScaling: null,
      maxPositionEmbeddings: 2048,
      auxLayers: [1, 15, 28],
      auxLayersSource: "default",
      auxConvention: "output-of-layer",
      normBeforeResidual: false,
      normBeforeFc: false,
      fcNorm: false,
      normOutput: { applyFinalNorm: true, feedPostNorm: false },
      fcBias: false,
      useAuxHiddenState: true,
      dtype: "float16",
    });
  });

  it("reads the yuhuili LlamaForCausalLM config, which has no RoPE fields, as the EAGLE flavour with theta 10000", () => {
    const { config, ignoredFields } = parse(YUHUILI_LLAMA31_8B, LLAMA31_8B);
    expect(ignoredFields).toEqual([]);
    expect(config).toEqual({ ...parse(SPECFORGE_LLAMA3_8B, LLAMA31_8B).config, flavour: "eagle", architectures: ["LlamaForCausalLM"] });
  });

  it("parses SpecForge's qwen3-8b draft: the Qwen target's switched-off window is not the draft's", () => {
    const { config, ignoredFields } = parse(SPECFORGE_QWEN3_8B);
    expect(ignoredFields).toEqual([]);
    expect(config).toMatchObject({ flavour: "sglang", ropeTheta: 1e6, rmsNormEps: 1e-6, maxPositionEmbeddings: 40960, auxLayers: [1, 17, 32] });
    expect(config.slidingWindow).toBeUndefined();
  });

  it("parses AngelSlim's qwen3-4b draft, whose tie_word_embeddings is the target's and inert", () => {
    const { config, ignoredFields } = parse(ANGELSLIM_QWEN3_4B, QWEN3_4B);
    expect(ignoredFields).toEqual([]);
    expect(config).toMatchObject({
      flavour: "angelslim",
      hiddenSize: 2560,
      targetHiddenSize: 2560,
      headDim: 128,
      draftVocabSize: 32000,
      usesTargetLmHead: false,
      auxLayers: [1, 17, 32],
      normOutput: { applyFinalNorm: true, feedPostNorm: false },
    });
  });

  it("parses a speculators config: nested layer fields, input-to-layer ids, llama3 RoPE", () => {
    const { config, ignoredFields } = parse(SPECULATORS_LLAMA31_8B, LLAMA31_8B);
    expect(ignoredFields).toEqual([]);
    expect(config).toMatchObject({
      flavour: "speculators",
      architectures: ["Eagle3Speculator"],
      hiddenSize: 4096,
      targetHiddenSize: 4096,
      vocabSize: 128256,
      draftVocabSize: 32000,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      maxPositionEmbeddings: 131072,
      auxLayers: [1, 15, 28],
      auxLayersSource: "explicit",
      auxConvention: "input-to-layer",
      normBeforeResidual: true,
      normOutput: { applyFinalNorm: true, feedPostNorm: false },
      dtype: "bfloat16",
    });
  });

  it("reads the Eagle3DraftModel spelling with transformers-5 rope_parameters and top-level norm flags", () => {
    const json = spec(
      { architectures: ["Eagle3DraftModel"], dtype: "bfloat16", norm_before_fc: true, torch_dtype: undefined },
      { rope_scaling: undefined, rope_theta: undefined, rope_parameters: { rope_theta: 10000.0, rope_type: "default" } },
    );
    const { config, ignoredFields } = parse(json, LLAMA31_8B);
    expect(ignoredFields).toEqual([]);
    expect(config).toMatchObject({ flavour: "speculators", ropeTheta: 10000, ropeScaling: null, normBeforeFc: true, dtype: "bfloat16" });
  });

  it("parses a SpecJAX export: no hidden_act, no max_position_embeddings", () => {
    const { config, ignoredFields } = parse(SPECJAX_QWEN3_8B);
    expect(ignoredFields).toEqual([]);
    expect(config).toMatchObject({ flavour: "specjax", ropeTheta: 1e6, maxPositionEmbeddings: 2048, headDim: 128, auxLayers: [1, 17, 32] });
  });

  it("keeps SpecForge's gpt-oss head_dim (64 heads × 64 ≠ 2880) and its output-of-layer ids", () => {
    const json = {
      ...without(SPECFORGE_LLAMA3_8B, "bos_token_id", "eos_token_id"),
      eagle_config: { eagle_aux_hidden_state_layer_ids: [1, 11, 21] },
      head_dim: 64,
      hidden_size: 2880,
      intermediate_size: 17280,
      max_position_embeddings: 4096,
      num_attention_heads: 64,
      torch_dtype: "bfloat16",
      vocab_size: 201088,
    };
    const { config } = parse(json, GPT_OSS_20B);
    expect(config).toMatchObject({ headDim: 64, numHeads: 64, auxLayers: [1, 11, 21], auxLayersSource: "explicit", auxConvention: "output-of-layer" });
  });

  it("resolves SpecForge's llama3-70B RoPE scaling", () => {
    const json = {
      ...SPECFORGE_LLAMA3_8B,
      hidden_size: 8192,
      intermediate_size: 28672,
      num_attention_heads: 64,
      head_dim: 128,
      max_position_embeddings: 4096,
      rope_theta: 500000.0,
      rope_scaling: { factor: 8.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 4096, rope_type: "llama3" },
    };
    const { config } = parse(json, LLAMA33_70B);
    expect(config.ropeScaling).toEqual({ type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 4096 });
    expect(config.auxLayers).toEqual([1, 39, 76]);
  });

  it("resolves linear and YaRN scaling (nebius gpt-oss draft) with transformers' defaults", () => {
    expect(parse(sf({ rope_scaling: { type: "linear", factor: 2 } })).config.ropeScaling).toEqual({ type: "linear", factor: 2 });
    const yarn = { beta_fast: 32.0, beta_slow: 1.0, factor: 32.0, original_max_position_embeddings: 4096, rope_type: "yarn", truncate: false };
    expect(parse(sf({ rope_scaling: yarn })).config.ropeScaling).toEqual({
      type: "yarn",
      factor: 32,
      originalMaxPositionEmbeddings: 4096,
      betaFast: 32,
      betaSlow: 1,
      truncate: false,
      attentionFactor: 0.1 * Math.log(32) + 1,
    });
    const bare = parse(sf({ rope_scaling: { rope_type: "yarn", factor: 4 } })).config.ropeScaling;
    expect(bare).toMatchObject({ originalMaxPositionEmbeddings: 40960, betaFast: 32, betaSlow: 1, truncate: true });
  });

  it("accepts rope_scaling mirrored into rope_parameters (SpecForge exports)", () => {
    const r = { rope_type: "linear", factor: 2 };
    const { config } = parse(sf({ rope_scaling: r, rope_parameters: { ...r, rope_theta: 1000000 } }));
    expect(config).toMatchObject({ ropeTheta: 1e6, ropeScaling: { type: "linear", factor: 2 } });
  });
});

describe("parseDraftConfig: defaults and variant flags", () => {
  it.each([
    [32, [1, 15, 28]],
    [36, [1, 17, 32]],
    [28, [1, 13, 24]],
    [80, [1, 39, 76]],
  ])("takes outputs of layers {1, L//2 − 1, L − 4} for L = %i", (numLayers, layers) => {
    expect(defaultAuxLayers(numLayers)).toEqual(layers);
    const { config } = parse(SPECFORGE_QWEN3_8B, { ...QWEN3_8B, numLayers });
    expect(config).toMatchObject({ auxLayers: layers, auxLayersSource: "default", auxConvention: "output-of-layer" });
  });

  it("reads explicit ids in the family's convention, or the one the caller names", () => {
    const ids = (v: unknown) => sf({ eagle_config: { eagle_aux_hidden_state_layer_ids: v, use_aux_hidden_state: true } });
    expect(parse(ids([2, 18, 33])).config.auxLayers).toEqual([2, 18, 33]);
    expect(parse(ids([2, 18, 33]), QWEN3_8B, { auxConvention: "input-to-layer" }).config).toMatchObject({
      auxLayers: [1, 17, 32],
      auxConvention: "input-to-layer",
    });
    expect(parse(SPECULATORS_LLAMA31_8B, LLAMA31_8B, { auxConvention: "output-of-layer" }).config).toMatchObject({
      auxLayers: [2, 16, 29],
      auxConvention: "output-of-layer",
    });
    // The top-level spelling is vLLM's: a flat config holding only it is read as vLLM reads it.
    const topLevel = sf({ eagle_aux_hidden_state_layer_ids: [2, 18, 33] });
    expect(parse(topLevel).config).toMatchObject({ auxLayers: [1, 17, 32], auxConvention: "input-to-layer" });
    const both = sf({ eagle_aux_hidden_state_layer_ids: [2, 18, 33], eagle_config: { eagle_aux_hidden_state_layer_ids: [2, 18, 33] } });
    expect(parse(both).config).toMatchObject({ auxLayers: [2, 18, 33], auxConvention: "output-of-layer" });
  });

  it("defaults norm_before_residual per family: true for speculators (as vLLM), false elsewhere", () => {
    expect(parse(without(SPECULATORS_LLAMA31_8B, "norm_before_residual"), LLAMA31_8B).config.normBeforeResidual).toBe(true);
    expect(parse(spec({ norm_before_residual: false }), LLAMA31_8B).config.normBeforeResidual).toBe(false);
    expect(parse(sf({ norm_before_residual: true })).config.normBeforeResidual).toBe(true);
  });

  it("maps norm_output per family: SpecForge's final-norm switch, speculators' post-norm feedback", () => {
    expect(parse(sf({ norm_output: false })).config.normOutput).toEqual({ applyFinalNorm: false, feedPostNorm: false });
    expect(parse(sf({ norm_output: true, fc_norm: true })).config).toMatchObject({
      fcNorm: true,
      normOutput: { applyFinalNorm: true, feedPostNorm: false },
    });
    expect(parse(spec({ norm_output: true }), LLAMA31_8B).config.normOutput).toEqual({ applyFinalNorm: true, feedPostNorm: true });
  });

  it("reads norm_before_fc at the top or in eagle_config, bias as fc's, and draft_vocab_size's absence as the target head", () => {
    expect(parse(sf({ eagle_config: { norm_before_fc: true } })).config.normBeforeFc).toBe(true);
    expect(parse(sf({ norm_before_fc: true, bias: true })).config).toMatchObject({ normBeforeFc: true, fcBias: true });
    const full = parse(without(SPECFORGE_QWEN3_8B, "draft_vocab_size")).config;
    expect(full).toMatchObject({ draftVocabSize: 151936, usesTargetLmHead: true });
    expect(parse(sf({ draft_vocab_size: 151936 })).config.usesTargetLmHead).toBe(false);
  });

  it("accepts a draft whose width differs from the target's when target_hidden_size names the target's", () => {
    const { config } = parse(sf({ hidden_size: 2048, target_hidden_size: 4096 }));
    expect(config).toMatchObject({ hiddenSize: 2048, targetHiddenSize: 4096, headDim: 128 });
    expect(parse(sf({ head_dim: undefined, hidden_size: 2048, target_hidden_size: 4096 })).config.headDim).toBe(64);
  });

  it("treats a draft's own sliding window as binding", () => {
    expect(parse(sf({ use_sliding_window: undefined, sliding_window: 2048 })).config.slidingWindow).toBe(2048);
    expect(parse(sf({ use_sliding_window: false, sliding_window: 32768 })).config.slidingWindow).toBeUndefined();
    const typed = sf({ use_sliding_window: undefined, layer_types: ["sliding_attention"], sliding_window: 512 });
    expect(parse(typed).config.slidingWindow).toBe(512);
    expect(parse(sf({ layer_types: ["full_attention"], sliding_window: 512 })).config.slidingWindow).toBeUndefined();
  });

  it("lists unknown fields, nested ones by path, when not strict; ignores nulls and _-prefixed keys", () => {
    const json = spec({ foo: 1, _name_or_path: "x", bar: null }, { baz: true, rope_scaling: { rope_type: "default", qux: 1 } });
    expect(parse(json, LLAMA31_8B, { strict: false }).ignoredFields).toEqual([
      "foo",
      "transformer_layer_config.baz",
      "transformer_layer_config.rope_scaling.qux",
    ]);
    expect(parse(sf({ eagle_config: { extra: 1 } }), QWEN3_8B, { strict: false }).ignoredFields).toEqual(["eagle_config.extra"]);
  });
});

describe("parseDraftConfig: refused configs", () => {
  it("refuses what is not a draft config", () => {
    throws(() => parse([1]), BAD, "not a JSON object");
    throws(() => parse(sf({ architectures: ["Qwen3ForCausalLM"] })), UNSUPPORTED, "Qwen3ForCausalLM", "LlamaForCausalLMEagle3");
    throws(() => parse(without(SPECFORGE_QWEN3_8B, "architectures")), UNSUPPORTED, "architectures (none)");
    throws(() => parse(sf({ architectures: "LlamaForCausalLMEagle3" })), BAD, "architectures must be an array of strings");
    throws(() => parse(sf({ model_type: "qwen3" })), UNSUPPORTED, 'model_type "qwen3"');
    throws(() => parse(without(SPECFORGE_QWEN3_8B, "model_type")), BAD, "required field model_type is missing");
    throws(() => parse(without(SPECFORGE_QWEN3_8B, "hidden_size")), BAD, "required field hidden_size is missing");
  });

  it("refuses speculators configs of other kinds", () => {
    throws(() => parse(spec({ speculators_model_type: "dflash" }), LLAMA31_8B), UNSUPPORTED, 'speculators_model_type "dflash"');
    const peagle = spec({ speculators_config: { ...SPECULATORS_LLAMA31_8B.speculators_config, algorithm: "peagle" } });
    throws(() => parse(peagle, LLAMA31_8B), UNSUPPORTED, 'speculators_config.algorithm "peagle"');
    throws(() => parse(spec({}, { model_type: "qwen3" }), LLAMA31_8B), UNSUPPORTED, 'transformer_layer_config.model_type "qwen3"');
    throws(() => parse(spec({ architectures: ["Eagle3Speculator", "LlamaForCausalLM"] }), LLAMA31_8B), UNSUPPORTED, "LlamaForCausalLM");
    const flat = { ...SPECFORGE_QWEN3_8B, architectures: ["Eagle3Speculator"] };
    throws(() => parse(flat), BAD, "required field transformer_layer_config is missing");
  });

  it("refuses layers the engine does not run", () => {
    throws(() => parse(sf({ num_hidden_layers: 2 })), UNSUPPORTED, "num_hidden_layers 2", "multi-layer drafts are not supported yet");
    throws(() => parse(sf({ hidden_act: "gelu" })), UNSUPPORTED, 'hidden_act "gelu"');
    throws(() => parse(sf({ attention_bias: true })), UNSUPPORTED, "attention_bias true");
    throws(() => parse(spec({}, { mlp_bias: true }), LLAMA31_8B), UNSUPPORTED, "transformer_layer_config.mlp_bias true");
    throws(() => parse(sf({ use_sliding_window: true })), UNSUPPORTED, "use_sliding_window true");
    throws(() => parse(sf({ layer_types: ["linear_attention"] })), UNSUPPORTED, 'layer_types "linear_attention"');
    throws(() => parse(sf({ head_dim: 127 })), BAD, "head_dim 127 is odd");
    throws(() => parse(sf({ num_key_value_heads: 5 })), BAD, "num_attention_heads 32 is not a multiple of num_key_value_heads 5");
    const single = sf({ eagle_config: { use_aux_hidden_state: false } });
    throws(() => parse(single), UNSUPPORTED, "eagle_config.use_aux_hidden_state false");
  });

  it("refuses tied embeddings except where the producer ignores the flag (§6.6)", () => {
    throws(() => parse(sf({ tie_word_embeddings: true })), UNSUPPORTED, "tie_word_embeddings true", "§6.6");
    throws(() => parse(spec({ tie_word_embeddings: true }), LLAMA31_8B), UNSUPPORTED, "tie_word_embeddings true");
    throws(() => parse(spec({}, { tie_word_embeddings: true }), LLAMA31_8B), UNSUPPORTED, "transformer_layer_config.tie_word_embeddings");
  });

  it("refuses RoPE it cannot describe exactly", () => {
    throws(() => parse(sf({ rope_scaling: { rope_type: "dynamic", factor: 2 } })), UNSUPPORTED, 'rope_scaling.rope_type "dynamic"');
    throws(() => parse(sf({ rope_parameters: { rope_type: "longrope" } })), UNSUPPORTED, 'rope_parameters.rope_type "longrope"');
    throws(() => parse(sf({ rope_scaling: { type: "mrope", mrope_section: [16, 24, 24] } })), UNSUPPORTED, "mrope_section");
    throws(() => parse(sf({ partial_rotary_factor: 0.5 })), UNSUPPORTED, "partial_rotary_factor 0.5");
    const ds = { rope_type: "yarn", factor: 40, mscale: 0.707, mscale_all_dim: 0.707, original_max_position_embeddings: 4096 };
    throws(() => parse(sf({ rope_scaling: ds })), UNSUPPORTED, "rope_scaling.mscale");
    throws(() => parse(sf({ rope_scaling: { rope_type: "linear" } })), BAD, "required field rope_scaling.factor is missing");
    const llama3 = { rope_type: "llama3", factor: 8, low_freq_factor: 4, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    throws(() => parse(sf({ rope_scaling: llama3 })), BAD, "rope_scaling.high_freq_factor must exceed");
    const mirrored = sf({ rope_scaling: { rope_type: "linear", factor: 2 }, rope_parameters: { rope_type: "linear", factor: 4 } });
    throws(() => parse(mirrored), BAD, "rope_scaling and rope_parameters describe different RoPE");
    throws(() => parse(sf({ rope_parameters: { rope_theta: 10000 } })), BAD, "rope_theta (1000000) and rope_parameters.rope_theta (10000) disagree");
    throws(() => parse(sf({ rope_scaling: { type: "linear", rope_type: "yarn" } })), BAD, "disagree");
  });

  it("refuses unknown fields in strict mode", () => {
    throws(() => parse(sf({ foo: 1 })), UNSUPPORTED, "unknown config field(s) foo", "strictConfig: false");
    throws(() => parse(spec({}, { foo: 1 }), LLAMA31_8B), UNSUPPORTED, "transformer_layer_config.foo");
  });

  it("refuses contradicting copies of a field", () => {
    const ids = sf({ eagle_aux_hidden_state_layer_ids: [1, 2, 3], eagle_config: { eagle_aux_hidden_state_layer_ids: [2, 18, 33] } });
    throws(() => parse(ids), BAD, "eagle_config.eagle_aux_hidden_state_layer_ids and eagle_aux_hidden_state_layer_ids disagree");
    const fc = sf({ norm_before_fc: false, eagle_config: { norm_before_fc: true } });
    throws(() => parse(fc), BAD, "norm_before_fc (false) and eagle_config.norm_before_fc (true) disagree");
  });
});

describe("parseDraftConfig: mismatches with the target", () => {
  it("names the field and both values", () => {
    throws(() => parse(SPECFORGE_QWEN3_8B, { ...QWEN3_8B, vocabSize: 152064 }), MISMATCH, "vocab_size 151936", "vocab_size 152064");
    throws(() => parse(SPECFORGE_QWEN3_8B, QWEN3_4B), MISMATCH, "hidden_size (no target_hidden_size) 4096", "hidden_size 2560");
    throws(() => parse(sf({ target_hidden_size: 5120 })), MISMATCH, "target_hidden_size 5120", "hidden_size 4096");
    throws(() => parse(sf({ draft_vocab_size: 200000 })), MISMATCH, "draft_vocab_size 200000 exceeds vocab_size 151936");
    throws(() => parse(spec({}, { vocab_size: 128000 }), LLAMA31_8B), MISMATCH, "transformer_layer_config.vocab_size 128000", "128256");
  });

  it("refuses aux layers the target cannot provide, naming the field, the ids and L", () => {
    const ids = (v: unknown) => sf({ eagle_config: { eagle_aux_hidden_state_layer_ids: v } });
    const field = "eagle_config.eagle_aux_hidden_state_layer_ids";
    const L36 = { ...LLAMA31_8B, numLayers: 36 };
    throws(() => parse(ids([1, 17])), MISMATCH, `${field} [1, 17] (output-of-layer)`, "the target has 36 layers");
    throws(() => parse(ids([17, 1, 32])), MISMATCH, `${field} [17, 1, 32]`, "ascending");
    throws(() => parse(ids([1, 17, 35])), MISMATCH, `${field} [1, 17, 35]`, "0..34");
    throws(() => parse(spec({ eagle_aux_hidden_state_layer_ids: [2, 18, 36] }), L36), MISMATCH, "[2, 18, 36] (input-to-layer), i.e. outputs of layers [1, 17, 35]");
    throws(() => parse(spec({ eagle_aux_hidden_state_layer_ids: [0, 18, 33] }), L36), UNSUPPORTED, "id 0, the embedding output");
    throws(() => parse(ids([1, -1, 3])), BAD, `${field} must be an array of layer ids`);
    throws(() => parse(SPECFORGE_QWEN3_8B, { ...QWEN3_8B, numLayers: 4 }), MISMATCH, "[1, 1, 0] for L = 4");
  });
});

describe("readDraftConfig", () => {
  const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
  const TINY: DraftTarget = { numLayers: 4, hiddenSize: 64, vocabSize: 512 };
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "draft-config-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads the committed draft fixtures", async () => {
    const { config, ignoredFields } = await readDraftConfig(fixture("eagle3-qwen3-tiny"), TINY);
    expect(ignoredFields).toEqual([]);
    expect(config).toMatchObject({ flavour: "sglang", headDim: 16, draftVocabSize: 128, auxLayers: [0, 1, 2], auxLayersSource: "explicit" });
    expect((await readDraftConfig(fixture("eagle3-qwen3-tiny-bin"), TINY)).config).toMatchObject({ flavour: "eagle", dtype: "float16" });
  });

  it("names the file when it is missing or not JSON", async () => {
    await expect(readDraftConfig(dir, TINY)).rejects.toMatchObject({ code: BAD, message: expect.stringContaining("no such file") });
    await writeFile(join(dir, "config.json"), "{");
    await expect(readDraftConfig(dir, TINY)).rejects.toMatchObject({ code: BAD, message: expect.stringContaining("not valid JSON") });
  });
});
