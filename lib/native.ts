/**
 * Loads the native addon once and types every export. A missing or broken build gives one
 * actionable error (code ERR_NATIVE_NOT_BUILT) instead of a bare dlopen failure.
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Eagle3Error, ErrorCode } from "./errors.js";
import type { DType } from "./model/dtype.js";

export type DeviceName = "cpu" | "cuda";

export interface NativeTensor {
  readonly dtype: DType;
  readonly shape: number[];
  readonly device: DeviceName;
  readonly nbytes: number;
  readonly disposed: boolean;
  toBytes(): Uint8Array;
  dispose(): void;
}

export interface NativeTensorStatic {
  empty(dtype: DType, shape: readonly number[], device: DeviceName): NativeTensor;
  fromBytes(bytes: ArrayBufferView, dtype: DType, shape: readonly number[], device: DeviceName): NativeTensor;
}

export interface LoadEntry {
  name: string;
  tensor: NativeTensor;
  dstOffset: number;
  fileOffset: number;
  byteLength: number;
  srcDtype: DType;
}

export interface NativeQwenConfig {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  rotaryDim: number;
  qkNorm: boolean;
  attentionBias: boolean;
  captureLayers: number[];
}

export interface NativeLayerWeights {
  inputNorm: NativeTensor;
  qkv: NativeTensor;
  qkvBias?: NativeTensor;
  qNorm?: NativeTensor;
  kNorm?: NativeTensor;
  o: NativeTensor;
  postNorm: NativeTensor;
  gateUp: NativeTensor;
  down: NativeTensor;
}

export interface NativeQwenWeights {
  embed: NativeTensor;
  finalNorm: NativeTensor;
  lmHead: NativeTensor;
  layers: NativeLayerWeights[];
}

/** One forward step, laid out as the native executor expects (see native/runtime/step.h). */
export interface NativeStep {
  tokens: Int32Array;
  positions: Int32Array;
  qStart: Int32Array;
  kvLen: Int32Array;
  pageTable: Int32Array;
  maxPages: number;
  treeMask?: BigInt64Array;
  logitRows: Int32Array;
  sampling?: Uint8Array;
  /**
   * Token t is the one the previous call on this model (a step that sampled) drew in row
   * feedback[t]: a step planned while that one ran, before its tokens were read back (`tokens`
   * then holds placeholders).
   */
  feedback?: Int32Array;
  wantLogits?: boolean;
  wantHidden?: boolean;
  /** Return the device time of forward + sampling (synchronises; for benchmarks). */
  wantTiming?: boolean;
}

export interface NativeStepResult {
  tokens?: Int32Array;
  logits?: Float32Array;
  hidden?: Float32Array;
  deviceMs?: number;
  /** The step recorded a new CUDA graph, so it took longer than its kind usually does. */
  captured?: boolean;
  /** Wall time of the call on its worker thread (without the event loop's work meanwhile). */
  callMs: number;
}

/** A target prefill step whose features the draft extends over (see HostSpecPrefill). */
export interface NativeSpecPrefill extends NativeStep {
  slots: Int32Array;
  /** Token at context position p + 1 for each new token p; -1 = the token this step samples. */
  nextTokens: Int32Array;
  finalChunk: Uint8Array;
  /** The draft alone catches up over tokens plain steps ran, from the features they kept. */
  storedFeatures?: boolean;
}

/** One speculative round for B sequences (see HostSpecRound). */
/** The draft trees of one round on a backend (see TreeState in native/runtime/ops.h). */
export interface NativeTreeState {
  steps: number;
  topk: number;
  score: NativeTensor;
  token: NativeTensor;
  parent: NativeTensor;
  mask: NativeTensor;
  live: NativeTensor;
}

export interface NativeRound {
  steps: number;
  topk: number;
  draftTokens: number;
  slots: Int32Array;
  committed: Int32Array;
  roots: Int32Array;
  pageTable: Int32Array;
  maxPages: number;
  sampling: Uint8Array;
  /** Time each phase on the device, synchronising between phases (each replayed from a graph of its own where rounds have graphs). */
  profile?: boolean;
  /**
   * The same sequences as the previous call on this model, which was a round (it may still be
   * running): their committed lengths and roots are where its acceptance leaves them on the
   * device. `committed` then holds upper bounds, and `roots` is not read.
   */
  chained?: boolean;
}

export interface NativeRoundResult {
  /** Accepted drafts then the bonus token, sequence after sequence. */
  tokens: Int32Array;
  counts: Int32Array;
  drafted: Int32Array;
  /** The verified trees' tokens, B × draftTokens, root first. */
  trees: Int32Array;
  /** Device time per phase, in profiled rounds (0 otherwise). */
  draftMs: number;
  verifyMs: number;
  acceptMs: number;
  /** Device time of the whole round. */
  deviceMs: number;
  /** Host time in native code: checking and uploading the round, unpacking its tokens once they are back. */
  stageMs: number;
  readMs: number;
  /** The round recorded a new CUDA graph, so it took longer than its kind usually does. */
  captured?: boolean;
  /** Wall time of the call on its worker thread (without the event loop's work meanwhile). */
  callMs: number;
}

export interface NativeDraftOptions {
  slots: number;
  config: {
    hiddenSize: number; targetHiddenSize: number; numHeads: number; numKvHeads: number; headDim: number;
    intermediateSize: number; vocabSize: number; draftVocabSize: number; rmsNormEps: number; ropeTheta: number;
    /** Multiplier of cos and sin (a yarn RoPE's attention factor; 1 otherwise). */
    ropeScale?: number;
    rotaryDim: number; normBeforeResidual: boolean; normBeforeFc: boolean; fcNorm: boolean; applyFinalNorm: boolean;
    feedPostNorm: boolean;
  };
  weights: {
    embed: NativeTensor; lmHead: NativeTensor; fc: NativeTensor; fcBias?: NativeTensor; inputNorm?: NativeTensor;
    fcNorm?: NativeTensor; hiddenNorm: NativeTensor; inputLayernorm: NativeTensor; postNorm: NativeTensor;
    finalNorm: NativeTensor; qkv: NativeTensor; o: NativeTensor; gateUp: NativeTensor; down: NativeTensor;
    vocabMap?: NativeTensor;
    /** A scaled RoPE's inverse frequencies, f32 [rotaryDim / 2] (absent: from ropeTheta). */
    ropeInvFreq?: NativeTensor;
  };
}

export interface NativeQwenModel {
  step(step: NativeStep): Promise<NativeStepResult>;
  prefillSpeculative(p: NativeSpecPrefill): Promise<NativeStepResult>;
  speculativeRound(r: NativeRound): Promise<NativeRoundResult>;
  /** The draft's top-16 (probabilities, target ids) a slot's next round starts from. */
  draftCandidates(slot: number): { probs: Float32Array; ids: Int32Array };
  dispose(): void;
  readonly info: { disposed: boolean; speculative: boolean; kvBytes?: number; numPages?: number; pageSize?: number };
}

export interface NativeQwenModelOptions {
  config: NativeQwenConfig;
  weights: NativeQwenWeights;
  device: DeviceName;
  maxTokens: number;
  /** Logit rows per step (the f32 logits buffer is rows × vocab). */
  maxLogitRows?: number;
  numPages: number;
  pageSize: number;
  /** Replay decode steps from captured CUDA graphs (default true). */
  cudaGraphs?: boolean;
  draft?: NativeDraftOptions;
}

/** Layout tensors of one attention call (see AttentionLayout in native/runtime/ops.h). */
export interface NativeAttentionLayout {
  numSeqs: number;
  numTokens: number;
  pageSize: number;
  maxPages: number;
  maxQLen: number;
  maxKvLen: number;
  qStart: NativeTensor;
  kvLen: NativeTensor;
  pageTable: NativeTensor;
  tokenSeq: NativeTensor;
  slots: NativeTensor;
  treeMask?: NativeTensor;
  treeBase?: NativeTensor;
}

/** One backend's ops on tensors of its device, run synchronously (kernel tests and timings). */
export interface NativeOps {
  embedding(ids: NativeTensor, table: NativeTensor, out: NativeTensor): void;
  /** Row-wise RMSNorm; `at`: rows of x gathered by index, written from column `col` of out's rows. */
  rmsnorm(x: NativeTensor, w: NativeTensor, eps: number, out: NativeTensor, at?: { rows?: NativeTensor; col?: number }): void;
  /** With `capture`, the new residual's row r also goes to dst[rows?.[r] ?? r, c : c + n] for each c in cols (at most 3). */
  addRmsnorm(residual: NativeTensor, x: NativeTensor, w: NativeTensor, eps: number, out: NativeTensor,
    capture?: { dst: NativeTensor; rows?: NativeTensor | null; cols: number[] }): void;
  linear(x: NativeTensor, w: NativeTensor, bias: NativeTensor | null, out: NativeTensor): void;
  qkvRopeStore(
    qkv: NativeTensor, qNorm: NativeTensor | null, kNorm: NativeTensor | null, eps: number, positions: NativeTensor,
    rotaryDim: number, theta: number, layout: NativeAttentionLayout, qOut: NativeTensor, kCache: NativeTensor, vCache: NativeTensor,
    /** A scaled RoPE's inverse frequencies (f32 [rotaryDim / 2]) instead of theta's, and the multiplier of cos and sin. */
    invFreq?: NativeTensor | null, scale?: number,
  ): void;
  attention(q: NativeTensor, kCache: NativeTensor, vCache: NativeTensor, layout: NativeAttentionLayout, scale: number, out: NativeTensor): void;
  /** qkvRopeStore into q and the caches, then attention into out: one kernel where the backend fuses them (CUDA decode; q then unwritten). */
  ropeAttention(
    qkv: NativeTensor, qNorm: NativeTensor | null, kNorm: NativeTensor | null, eps: number, positions: NativeTensor,
    rotaryDim: number, theta: number, layout: NativeAttentionLayout, q: NativeTensor, kCache: NativeTensor, vCache: NativeTensor,
    scale: number, out: NativeTensor, invFreq?: NativeTensor | null, ropeScale?: number,
  ): void;
  siluMul(gateUp: NativeTensor, out: NativeTensor): void;
  /** out = siluMul(gateUp) · wᵀ, the activation fused into the product where the backend can (`act`: its scratch where not). */
  swigluLinear(gateUp: NativeTensor, w: NativeTensor, act: NativeTensor, out: NativeTensor): void;
  gatherRows(x: NativeTensor, rows: NativeTensor, out: NativeTensor): void;
  copyColumns(src: NativeTensor, dst: NativeTensor, col: number): void;
  /** The device work of the ops `fn` calls, recorded as a graph (not run); its id for replay(), or -1 without graphs (CPU: fn not called). */
  capture(fn: () => void): number;
  replay(graph: number): void;
  scatterRows(src: NativeTensor, rows: NativeTensor, dst: NativeTensor): void;
  topkSoftmax(logits: NativeTensor, k: number, map: NativeTensor | null, probs: NativeTensor, ids: NativeTensor): void;
  sample(logits: NativeTensor, params: NativeTensor, tokens: NativeTensor): void;
  argmax(logits: NativeTensor, tokens: NativeTensor): void;
  /** From level 2, statesOut[i] = statesIn[parentRows[i]] (the next draft step's recurrent states) where both are given. */
  treeExpand(tree: NativeTreeState, level: number, probs: NativeTensor, ids: NativeTensor, tokens?: NativeTensor | null, mask?: NativeTensor | null,
    parentRows?: NativeTensor | null, statesIn?: NativeTensor | null, statesOut?: NativeTensor | null): void;
  treeBuild(tree: NativeTreeState, roots: NativeTensor, committed: NativeTensor, tokens: NativeTensor, positions: NativeTensor, mask: NativeTensor, parent: NativeTensor): void;
  treeAcceptGreedy(tokens: NativeTensor, parent: NativeTensor, argmax: NativeTensor, path: NativeTensor, accepted: NativeTensor, bonus: NativeTensor): void;
  treeAcceptSampled(tokens: NativeTensor, parent: NativeTensor, logits: NativeTensor, params: NativeTensor, path: NativeTensor, accepted: NativeTensor, bonus: NativeTensor): void;
  treeCommit(tokens: NativeTensor, path: NativeTensor, accepted: NativeTensor, bonus: NativeTensor, outTokens: NativeTensor, featureRows: NativeTensor, lastRows: NativeTensor): void;
  kvCompact(pool: NativeTensor, pageTable: NativeTensor, pageSize: number, committed: NativeTensor, path: NativeTensor, accepted: NativeTensor): void;
  treeAdvance(committed: NativeTensor, accepted: NativeTensor, bonus: NativeTensor, nextCommitted: NativeTensor, nextRoots: NativeTensor): void;
  stepLayout(committed: NativeTensor, pageTable: NativeTensor, pageSize: number, q: number, first: number, posBase: number, posStep: number,
    positions: NativeTensor | null, kvLen: NativeTensor, slots: NativeTensor): void;
  copy(src: NativeTensor, dst: NativeTensor): void;
  fillNormal(t: NativeTensor, seed: number, mean: number, std: number): void;
  synchronize(): void;
  timerStart(): void;
  /** Device milliseconds since timerStart(). */
  timerStop(): number;
  setGemmPath(path: "auto" | "gemv" | "skinny" | "cublaslt"): void;
  /** Attention splits a context over at most `max` blocks (0: automatic); for timings. */
  setAttentionSplits(max: number): void;
}

export interface GpuInfo {
  index: number;
  name: string;
  computeCapability: string;
  multiprocessors: number;
  totalBytes: number;
  freeBytes: number;
  l2Bytes: number;
}

export interface CudaStatus {
  compiled: boolean;
  driverVersion: number;
  runtimeVersion: number;
  error: string | null;
  gpus: GpuInfo[];
}

export interface BuildInfo {
  cuda: boolean;
  cudaArch: string;
  buildType: string;
  napiVersion: number;
  compiler: string;
}

export interface NativeAddon {
  NativeTensor: NativeTensorStatic;
  NativeQwenModel: new (options: NativeQwenModelOptions) => NativeQwenModel;
  NativeOps: new (device: DeviceName) => NativeOps;
  loadTensors(path: string, entries: LoadEntry[], onProgress?: (bytesDone: number) => void): Promise<void>;
  buildInfo(): BuildInfo;
  cudaStatus(): CudaStatus;
  /** Device-to-device copy rate, bytes read + written per second (median of reps). */
  measureCopyBandwidth(bytes: number, reps: number): number;
  /** bf16 cuBLASLt product rate in FLOP/s (median of reps). */
  measureGemmFlops(m: number, n: number, k: number, reps: number): number;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
export const addonPath = join(packageRoot, "build", "Release", "eagle3.node");

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (cached) return cached;
  if (!existsSync(addonPath)) {
    throw new Eagle3Error(
      ErrorCode.NATIVE_NOT_BUILT,
      `The eagle3 native addon is not built (looked for ${addonPath}). Run \`npm run build:native\` ` +
        "(needs cmake and a C++17 compiler; CUDA kernels are compiled when nvcc is found).",
    );
  }
  try {
    cached = createRequire(import.meta.url)(addonPath) as NativeAddon;
  } catch (cause) {
    throw new Eagle3Error(
      ErrorCode.NATIVE_NOT_BUILT,
      `The eagle3 native addon at ${addonPath} failed to load: ${(cause as Error).message}. ` +
        "Rebuild it with `npm run build:native`.",
      { cause },
    );
  }
  return cached;
}
