/**
 * Real model shapes for random-weight benchmarks, from the models' config.json values
 * (qwen-architectures.md §1.1), and the trained pair's target. Weights are generated on the
 * device with a seed.
 */
import type { TargetConfig } from "./config.js";

const qwen = (c: Omit<TargetConfig, "architectures" | "eosTokenIds" | "dtype" | "rotaryDim" | "rmsNormEps" | "oBias">): TargetConfig => ({
  ...c,
  architectures: [c.arch === "qwen3" ? "Qwen3ForCausalLM" : "Qwen2ForCausalLM"],
  rotaryDim: c.headDim,
  rmsNormEps: 1e-6,
  oBias: false,
  bosTokenId: 151643,
  eosTokenIds: [151645, 151643],
  dtype: "bfloat16",
});

export const PRESETS: Record<string, TargetConfig> = {
  "qwen3-4b": qwen({
    arch: "qwen3", hiddenSize: 2560, numLayers: 36, numHeads: 32, numKvHeads: 8, headDim: 128, intermediateSize: 9728,
    vocabSize: 151936, ropeTheta: 5e6, maxPositionEmbeddings: 262144, tieWordEmbeddings: true, attentionBias: false, qkNorm: true,
  }),
  "qwen2.5-7b": qwen({
    arch: "qwen2", hiddenSize: 3584, numLayers: 28, numHeads: 28, numKvHeads: 4, headDim: 128, intermediateSize: 18944,
    vocabSize: 152064, ropeTheta: 1e6, maxPositionEmbeddings: 32768, tieWordEmbeddings: false, attentionBias: true, qkNorm: false,
  }),
  "qwen3-32b": qwen({
    arch: "qwen3", hiddenSize: 5120, numLayers: 64, numHeads: 64, numKvHeads: 8, headDim: 128, intermediateSize: 25600,
    vocabSize: 151936, ropeTheta: 1e6, maxPositionEmbeddings: 40960, tieWordEmbeddings: false, attentionBias: false, qkNorm: true,
  }),
  // The target bench/train_pair.py trains (about 100M parameters, most of them the embedding): a
  // small model's steps, where fixed per-step costs weigh most.
  "trained-pair": qwen({
    arch: "qwen3", hiddenSize: 512, numLayers: 8, numHeads: 8, numKvHeads: 4, headDim: 64, intermediateSize: 1536,
    vocabSize: 151936, ropeTheta: 1e6, maxPositionEmbeddings: 4096, tieWordEmbeddings: true, attentionBias: false, qkNorm: true,
  }),
};
