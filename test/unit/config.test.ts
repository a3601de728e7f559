import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Eagle3Error } from "../../lib/errors.js";
import { expectThrows } from "../helpers/coded-errors.js";
import { parseTargetConfig, readTargetConfig } from "../../lib/model/config.js";

const SRC = "/models/x/config.json";
const BAD = "ERR_BAD_CHECKPOINT";
const UNSUPPORTED = "ERR_UNSUPPORTED_MODEL";

// Qwen/Qwen2.5-7B-Instruct config.json (transformers 4 era).
const QWEN25_7B = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: "silu",
  hidden_size: 3584,
  initializer_range: 0.02,
  intermediate_size: 18944,
  max_position_embeddings: 32768,
  max_window_layers: 28,
  model_type: "qwen2",
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 131072,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.43.1",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 152064,
};

// Qwen/Qwen3-4B-Thinking-2507 config.json (transformers 4 era).
const QWEN3_4B = {
  architectures: ["Qwen3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 2560,
  initializer_range: 0.02,
  intermediate_size: 9728,
  max_position_embeddings: 262144,
  max_window_layers: 36,
  model_type: "qwen3",
  num_attention_heads: 32,
  num_hidden_layers: 36,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 5000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.51.0",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

const without = (json: Record<string, unknown>, ...keys: string[]) =>
  Object.fromEntries(Object.entries(json).filter(([k]) => !keys.includes(k)));

// The same model as transformers 5 saves it.
const QWEN3_4B_V5 = {
  ...without(QWEN3_4B, "rope_scaling", "rope_theta", "torch_dtype"),
  dtype: "bfloat16",
  layer_types: Array(36).fill("full_attention"),
  pad_token_id: null,
  rope_parameters: { rope_theta: 5000000, rope_type: "default" },
  transformers_version: "5.17.0",
};

const parse = (json: unknown, strict?: boolean) => parseTargetConfig(json, SRC, { strict });
const qwen2 = (patch: Record<string, unknown>) => ({ ...QWEN25_7B, ...patch });
const qwen3 = (patch: Record<string, unknown>) => ({ ...QWEN3_4B, ...patch });

/** Asserts that `fn` throws `code` with a message containing the file and every fragment. */
const throws = (fn: () => unknown, code: string, ...fragments: string[]) => expectThrows(fn, code, SRC, ...fragments);

describe("parseTargetConfig: real configs", () => {
  it("parses Qwen2.5-7B-Instruct", () => {
    const { config, ignoredFields } = parse(QWEN25_7B);
    expect(ignoredFields).toEqual([]);
    expect(config).toEqual({
      arch: "qwen2",
      architectures: ["Qwen2ForCausalLM"],
      hiddenSize: 3584,
      numLayers: 28,
      numHeads: 28,
      numKvHeads: 4,
      headDim: 128,
      intermediateSize: 18944,
      vocabSize: 152064,
      rmsNormEps: 1e-6,
      ropeTheta: 1e6,
      rotaryDim: 128,
      maxPositionEmbeddings: 32768,
      tieWordEmbeddings: false,
      attentionBias: true,
      oBias: false,
      qkNorm: false,
      bosTokenId: 151643,
      eosTokenIds: [151645],
      dtype: "bfloat16",
    });
  });

  it("parses Qwen3-4B-Thinking-2507", () => {
    const { config, ignoredFields } = parse(QWEN3_4B);
    expect(ignoredFields).toEqual([]);
    expect(config).toMatchObject({
      arch: "qwen3",
      hiddenSize: 2560,
      numLayers: 36,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      intermediateSize: 9728,
      vocabSize: 151936,
      ropeTheta: 5e6,
      rotaryDim: 128,
      maxPositionEmbeddings: 262144,
      tieWordEmbeddings: true,
      attentionBias: false,
      oBias: false,
      qkNorm: true,
    });
  });

  it("parses the transformers 5 form of the same config identically", () => {
    expect(parse(QWEN3_4B_V5)).toEqual(parse(QWEN3_4B));
  });

  it.each(["qwen2-tiny", "qwen3-tiny", "qwen3-vocab"])("reads the transformers 5.17 fixture %s", async (name) => {
    const { config, ignoredFields } = await readTargetConfig(fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url)));
    expect(ignoredFields).toEqual([]);
    expect(config.dtype).toBe("bfloat16");
    if (name === "qwen3-tiny") expect(config).toMatchObject({ hiddenSize: 64, numHeads: 4, headDim: 24, ropeTheta: 1e6 });
    if (name === "qwen2-tiny") expect(config).toMatchObject({ headDim: 8, attentionBias: true, tieWordEmbeddings: true });
  });
});

describe("parseTargetConfig: defaults and variants", () => {
  it("follows transformers' defaults for optional fields", () => {
    const json = without(
      QWEN25_7B,
      ...["num_key_value_heads", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "hidden_act"],
      ...["bos_token_id", "eos_token_id", "torch_dtype"],
    );
    const { config } = parse(json);
    expect(config).toMatchObject({ numKvHeads: 28, rmsNormEps: 1e-6, ropeTheta: 10000, tieWordEmbeddings: false });
    expect(config.eosTokenIds).toEqual([]);
    expect(config.bosTokenId).toBeUndefined();
    expect(config.dtype).toBeUndefined();
    expect(parse(without(QWEN3_4B, "head_dim")).config.headDim).toBe(128); // Qwen3Config's default, not hidden / heads
  });

  it("gives Qwen3 with attention_bias a bias on q, k, v and o", () => {
    expect(parse(qwen3({ attention_bias: true })).config).toMatchObject({ attentionBias: true, oBias: true });
  });

  it("accepts eos_token_id as a list, and legacy or v5 spellings of default RoPE", () => {
    expect(parse(qwen3({ eos_token_id: [151645, 151643] })).config.eosTokenIds).toEqual([151645, 151643]);
    expect(parse(qwen3({ rope_scaling: { type: "default" } })).config.ropeTheta).toBe(5e6);
    expect(parse(qwen3({ rope_scaling: { rope_type: "default", rope_theta: 5e6 } })).config.ropeTheta).toBe(5e6);
  });

  it("takes rotaryDim from partial_rotary_factor, top level or in rope_parameters", () => {
    expect(parse(qwen3({ partial_rotary_factor: 0.5 })).config.rotaryDim).toBe(64);
    const v5 = { ...QWEN3_4B_V5, rope_parameters: { rope_type: "default", rope_theta: 5e6, partial_rotary_factor: 0.25 } };
    expect(parse(v5).config.rotaryDim).toBe(32);
  });

  it("ignores inert fields: _-prefixed, nulls, use_mrope false, old PretrainedConfig and generation keys", () => {
    const json = qwen2({ _name_or_path: "x", foo: null, use_mrope: false, output_attentions: false, temperature: 0.7 });
    expect(parse(json).ignoredFields).toEqual([]);
  });
});

describe("parseTargetConfig: unsupported models", () => {
  it.each([
    ["qwen3_next", "Qwen3NextForCausalLM"],
    ["qwen3_moe", "Qwen3MoeForCausalLM"],
    ["llama", "LlamaForCausalLM"],
    ["qwen2_vl", "Qwen2VLForConditionalGeneration"],
  ])("refuses model_type %s", (modelType, architecture) => {
    const json = qwen3({ model_type: modelType, architectures: [architecture] });
    throws(() => parse(json), UNSUPPORTED, `model_type "${modelType}"`, architecture);
  });

  it("refuses an architecture other than the causal LM", () => {
    const json = qwen3({ architectures: ["Qwen3ForSequenceClassification"] });
    throws(() => parse(json), UNSUPPORTED, "Qwen3ForSequenceClassification");
  });

  it("refuses quantized checkpoints", () => {
    throws(() => parse(qwen3({ quantization_config: { quant_method: "fp8" } })), UNSUPPORTED, "quantization_config", "fp8");
  });

  it.each([
    [{ rope_scaling: { rope_type: "yarn", factor: 4 } }, 'rope_scaling.rope_type "yarn"'],
    [{ rope_scaling: { type: "linear", factor: 2 } }, 'rope_scaling.type "linear"'],
    [{ rope_scaling: { rope_type: "dynamic", factor: 2 } }, 'rope_scaling.rope_type "dynamic"'],
    [{ rope_parameters: { rope_type: "llama3", rope_theta: 5e6 } }, 'rope_parameters.rope_type "llama3"'],
  ])("refuses scaled RoPE %j", (patch, fragment) => {
    throws(() => parse(qwen3(patch)), UNSUPPORTED, fragment);
  });

  it("refuses sliding-window attention", () => {
    throws(() => parse(qwen2({ use_sliding_window: true })), UNSUPPORTED, "use_sliding_window");
    const layerTypes = [...Array(35).fill("full_attention"), "sliding_attention"];
    throws(() => parse(qwen3({ layer_types: layerTypes })), UNSUPPORTED, "layer_types", "sliding_attention");
  });

  it("refuses an activation other than silu", () => {
    throws(() => parse(qwen3({ hidden_act: "gelu" })), UNSUPPORTED, "hidden_act", "gelu");
  });

  it("refuses unknown fields in strict mode and lists them otherwise", () => {
    const rope_scaling = { rope_type: "default", mrope_section: [1] };
    const json = qwen3({ mlp_bias: true, auto_map: { AutoModel: "x.Y" }, rope_scaling });
    throws(() => parse(json), UNSUPPORTED, "mlp_bias", "auto_map", "rope_scaling.mrope_section", "strictConfig: false");
    expect(parse(json, false).ignoredFields.sort()).toEqual(["auto_map", "mlp_bias", "rope_scaling.mrope_section"]);
  });

  it("treats attention_bias and use_mrope true as unknown for Qwen2, whose transformers class ignores them", () => {
    throws(() => parse(qwen2({ attention_bias: false, use_mrope: true })), UNSUPPORTED, "attention_bias", "use_mrope");
  });
});

describe("parseTargetConfig: broken configs", () => {
  it("refuses a config that is not an object", () => {
    throws(() => parse([]), BAD, "not a JSON object");
  });

  it.each(["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"])(
    "names missing required field %s",
    (key) => {
      throws(() => parse(without(QWEN3_4B, key)), BAD, `required field ${key} is missing`);
      throws(() => parse(qwen3({ [key]: null })), BAD, `required field ${key} is missing`);
    },
  );

  it.each([
    ["hidden_size", "2560"],
    ["hidden_size", 2560.5],
    ["vocab_size", 0],
    ["vocab_size", -151936],
    ["num_key_value_heads", true],
    ["max_position_embeddings", "long"],
    ["head_dim", 0],
    ["model_type", 3],
    ["architectures", "Qwen3ForCausalLM"],
    ["tie_word_embeddings", "yes"],
    ["attention_bias", 1],
    ["use_sliding_window", "false"],
    ["rms_norm_eps", 0],
    ["rms_norm_eps", "1e-6"],
    ["bos_token_id", -1],
    ["eos_token_id", "151645"],
    ["eos_token_id", [151645, "x"]],
    ["torch_dtype", 16],
    ["rope_theta", -1],
    ["rope_theta", "5e6"],
    ["rope_scaling", "default"],
    ["partial_rotary_factor", 1.5],
    ["partial_rotary_factor", 0],
    ["layer_types", ["full_attention"]],
  ])("names %s = %j of the wrong type or range", (key, value) => {
    throws(() => parse(qwen3({ [key]: value })), BAD, key);
  });

  it("checks head counts and head size", () => {
    throws(() => parse(qwen3({ num_key_value_heads: 5 })), BAD, "num_attention_heads 32", "num_key_value_heads 5");
    throws(() => parse(qwen3({ head_dim: 127 })), BAD, "head_dim 127");
    throws(() => parse(qwen3({ partial_rotary_factor: 0.2 })), BAD, "partial_rotary_factor 0.2", "25 rotary dimensions");
  });

  it("refuses RoPE settings that disagree", () => {
    const json = { ...QWEN3_4B_V5, rope_theta: 1e6 };
    throws(() => parse(json), BAD, "rope_theta (1000000)", "rope_parameters.rope_theta (5000000)");
  });
});

describe("readTargetConfig", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "eagle3-cfg-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function rejects(p: Promise<unknown>, ...fragments: string[]): Promise<void> {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Eagle3Error).code).toBe(BAD);
    for (const f of [join(dir, "config.json"), ...fragments]) expect((err as Error).message).toContain(f);
  }

  it("reads dir/config.json", async () => {
    await writeFile(join(dir, "config.json"), JSON.stringify(QWEN25_7B));
    expect((await readTargetConfig(dir)).config.hiddenSize).toBe(3584);
  });

  it("names a missing or unparsable config.json", async () => {
    await rejects(readTargetConfig(dir), "no such file");
    await writeFile(join(dir, "config.json"), "{,}");
    await rejects(readTargetConfig(dir), "not valid JSON");
  });

  it("names the file in errors about its fields", async () => {
    await writeFile(join(dir, "config.json"), JSON.stringify(without(QWEN25_7B, "vocab_size")));
    await rejects(readTargetConfig(dir), "vocab_size");
  });
});
