/**
 * An EAGLE-3 head of the shape SpecForge trains for a target (one layer of the target's width and
 * heads, a 32k draft vocabulary mapped onto the target's), described without a checkpoint: its
 * weights are generated on the device, so that rounds can be timed at real shapes.
 */
import type { TargetConfig } from "./config.js";
import { type DraftConfig, defaultAuxLayers } from "./draft-config.js";

export const RANDOM_DRAFT_VOCAB = 32000;

export function randomDraftConfig(t: TargetConfig, draftVocab = RANDOM_DRAFT_VOCAB): DraftConfig {
  return {
    flavour: "sglang", architectures: ["LlamaForCausalLMEagle3"],
    hiddenSize: t.hiddenSize, targetHiddenSize: t.hiddenSize, intermediateSize: t.intermediateSize,
    numHeads: t.numHeads, numKvHeads: t.numKvHeads, headDim: t.headDim, numLayers: 1,
    vocabSize: t.vocabSize, draftVocabSize: Math.min(draftVocab, t.vocabSize), usesTargetLmHead: false,
    rmsNormEps: t.rmsNormEps, ropeTheta: t.ropeTheta, ropeScaling: null, maxPositionEmbeddings: t.maxPositionEmbeddings,
    auxLayers: defaultAuxLayers(t.numLayers), auxLayersSource: "default", auxConvention: "output-of-layer",
    normBeforeResidual: false, normBeforeFc: false, fcNorm: false, normOutput: { applyFinalNorm: true, feedPostNorm: false },
    fcBias: false, useAuxHiddenState: true,
  };
}

/** Weight shapes by native key (the target's embedding is shared), and whether each is a norm. */
export function randomDraftShapes(c: DraftConfig): Array<[key: string, shape: number[], norm: boolean]> {
  const H = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, I = c.intermediateSize;
  return [
    ["fc", [H, 3 * c.targetHiddenSize], false], ["hiddenNorm", [H], true], ["inputLayernorm", [H], true],
    ["qkv", [q + 2 * kv, 2 * H], false], ["o", [H, q], false], ["postNorm", [H], true],
    ["gateUp", [2 * I, H], false], ["down", [H, I], false], ["finalNorm", [H], true], ["lmHead", [c.draftVocabSize, H], false],
  ];
}

/** Draft ids spread evenly over the target vocabulary (increasing, as d2t requires). */
export function spreadVocabMap(draftVocab: number, vocab: number): Int32Array {
  return Int32Array.from({ length: draftVocab }, (_, i) => Math.floor((i * vocab) / draftVocab));
}
