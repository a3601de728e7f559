/** A loaded target model: its config, native weights and KV cache on one device. */
import { Eagle3Error, ErrorCode } from "../errors.js";
import { openCheckpoint } from "./checkpoint.js";
import { type TargetConfig, readTargetConfig } from "./config.js";
import { type LoadProgress, loadWeights } from "./load-weights.js";
import { planQwenWeights, qwenWeightSpecs } from "./qwen-weights.js";
import { scaledRope } from "./rope-frequencies.js";
import type { DraftConfig } from "./draft-config.js";
import { randomDraftConfig, randomDraftShapes, spreadVocabMap } from "./random-draft.js";
import type { DraftPlan } from "./draft-weights.js";
import {
  type DeviceName, type GpuInfo, type NativeQwenModel, type NativeRound, type NativeRoundResult, type NativeSpecPrefill, type NativeStep,
  type NativeStepResult, type NativeTensor, native,
} from "../native.js";

/** An EAGLE-3 draft to load beside the target. */
export interface DraftAttachment {
  dir: string;
  config: DraftConfig;
  plan: DraftPlan;
  /** Sequences that can hold draft state at once (the engine's batch). */
  slots: number;
}

/** What the native model needs of a draft besides its weights. */
type DraftBinding = Pick<DraftAttachment, "dir" | "config" | "slots"> & Pick<DraftPlan, "ownEmbedding" | "vocabMap">;

export interface TargetOptions {
  device: DeviceName;
  /** Most tokens one forward step takes (prefill chunk + decode tokens). */
  maxStepTokens: number;
  /** Logit rows per step (default 256). */
  maxLogitRows?: number;
  /** KV cache pages; each holds `pageSize` tokens of every layer. */
  numPages: number;
  pageSize: number;
  /** Layers whose output hidden states every step returns (EAGLE-3 features). */
  captureLayers?: number[];
  strictConfig?: boolean;
  onProgress?: (p: LoadProgress) => void;
}

export class TargetModel {
  private constructor(
    /** Checkpoint directory, or "random:<preset>". */
    readonly source: string,
    readonly config: TargetConfig,
    readonly options: TargetOptions,
    private readonly model: NativeQwenModel,
  ) {}

  /** Loads a checkpoint directory (and a draft); `config` when the caller has already read it. */
  static async load(dir: string, opts: TargetOptions, config?: TargetConfig, draft?: DraftAttachment): Promise<TargetModel> {
    config ??= (await readTargetConfig(dir, { strict: opts.strictConfig ?? true })).config;
    const ckpt = await openCheckpoint(dir);
    const plan = planQwenWeights(config, ckpt);
    const draftBytes = draft ? draft.plan.plan.bytes : 0;
    checkDeviceMemory(opts.device, plan.bytes + draftBytes + kvCacheBytes(config, opts.numPages, opts.pageSize, opts.device, draft?.config), dir);
    const total = plan.bytes + draftBytes;
    const progress = (base: number) => (p: LoadProgress) =>
      opts.onProgress?.({ bytesLoaded: base + p.bytesLoaded, bytesTotal: total, fraction: total ? (base + p.bytesLoaded) / total : 1 });
    const weights = await loadWeights(plan, opts.device, progress(0));
    if (draft) {
      try {
        for (const [k, t] of await loadWeights(draft.plan.plan, opts.device, progress(plan.bytes))) weights.set(`draft.${k}`, t);
      } catch (err) {
        for (const t of weights.values()) t.dispose();
        throw err;
      }
    }
    const binding = draft && { ...draft, ownEmbedding: draft.plan.ownEmbedding, vocabMap: draft.plan.vocabMap };
    return TargetModel.create(dir, config, { ...opts, captureLayers: draft?.config.auxLayers ?? opts.captureLayers }, weights, binding);
  }

  /**
   * Random bf16 weights of `config`'s shapes, generated on the device from `seed`; with
   * `draftSlots`, also a random EAGLE-3 head of the shape SpecForge trains for it.
   */
  static random(name: string, config: TargetConfig, opts: TargetOptions, seed = 0, draftSlots = 0): TargetModel {
    const shapes: Array<[string, number[], boolean]> = qwenWeightSpecs(config).map((s) => {
      const shape = [...s.parts[0][1]];
      shape[0] = s.parts.reduce((n, [, sh]) => n + sh[0], 0);
      return [s.key, shape, s.kind === "norm"];
    });
    const draftConfig = draftSlots > 0 ? randomDraftConfig(config) : undefined;
    if (draftConfig) shapes.push(...randomDraftShapes(draftConfig).map(([k, sh, norm]): [string, number[], boolean] => [`draft.${k}`, sh, norm]));
    const bytes = shapes.reduce((n, [, sh]) => n + 2 * sh.reduce((a, b) => a * b, 1), 0);
    checkDeviceMemory(opts.device, bytes + kvCacheBytes(config, opts.numPages, opts.pageSize, opts.device, draftConfig), name);
    const addon = native();
    const ops = new addon.NativeOps(opts.device);
    const weights = new Map<string, NativeTensor>();
    try {
      shapes.forEach(([key, shape, norm], i) => {
        const t = addon.NativeTensor.empty("bf16", shape, opts.device);
        weights.set(key, t);
        ops.fillNormal(t, seed * 1000003 + i, norm ? 1 : 0, norm ? 0.05 : 0.02);
      });
      ops.synchronize();
    } catch (err) {
      for (const t of weights.values()) t.dispose();
      throw err;
    }
    const draft = draftConfig && {
      dir: `random:${name}-eagle3`, config: draftConfig, slots: draftSlots, ownEmbedding: false,
      vocabMap: spreadVocabMap(draftConfig.draftVocabSize, config.vocabSize),
    };
    return TargetModel.create(`random:${name}`, config, { ...opts, captureLayers: draftConfig?.auxLayers ?? opts.captureLayers }, weights, draft);
  }

  private static create(source: string, config: TargetConfig, opts: TargetOptions, w: Map<string, NativeTensor>, draft?: DraftBinding): TargetModel {
    try {
      const get = (k: string) => w.get(k)!;
      const model = new (native().NativeQwenModel)({
        draft: draft && nativeDraft(draft, w, opts.device),
        device: opts.device,
        maxTokens: opts.maxStepTokens,
        maxLogitRows: opts.maxLogitRows,
        numPages: opts.numPages,
        pageSize: opts.pageSize,
        config: {
          hiddenSize: config.hiddenSize,
          numLayers: config.numLayers,
          numHeads: config.numHeads,
          numKvHeads: config.numKvHeads,
          headDim: config.headDim,
          intermediateSize: config.intermediateSize,
          vocabSize: config.vocabSize,
          rmsNormEps: config.rmsNormEps,
          ropeTheta: config.ropeTheta,
          rotaryDim: config.rotaryDim,
          qkNorm: config.qkNorm,
          attentionBias: config.attentionBias,
          captureLayers: opts.captureLayers ?? [],
        },
        weights: {
          embed: get("embed"),
          finalNorm: get("finalNorm"),
          lmHead: w.get("lmHead") ?? get("embed"),
          layers: Array.from({ length: config.numLayers }, (_, i) => ({
            inputNorm: get(`layers.${i}.inputNorm`),
            qkv: get(`layers.${i}.qkv`),
            qkvBias: w.get(`layers.${i}.qkvBias`),
            qNorm: w.get(`layers.${i}.qNorm`),
            kNorm: w.get(`layers.${i}.kNorm`),
            o: get(`layers.${i}.o`),
            postNorm: get(`layers.${i}.postNorm`),
            gateUp: get(`layers.${i}.gateUp`),
            down: get(`layers.${i}.down`),
          })),
        },
      });
      return new TargetModel(source, config, opts, model);
    } finally {
      // The native model holds its own references; the JS handles can go now.
      for (const t of w.values()) t.dispose();
    }
  }

  /** Weight bytes the device reads per forward step. */
  get weightBytes(): number {
    return weightBytes(this.config);
  }

  get speculative(): boolean {
    return this.model.info.speculative === true;
  }

  step(step: NativeStep): Promise<NativeStepResult> {
    return this.model.step(step);
  }

  /** A prefill step whose captured features also run the draft over the same tokens. */
  prefillSpeculative(p: NativeSpecPrefill): Promise<NativeStepResult> {
    return this.model.prefillSpeculative(p);
  }

  /** The draft's top-16 a slot's next round starts from (inspection and tests). */
  draftCandidates(slot: number): { probs: Float32Array; ids: Int32Array } {
    return this.model.draftCandidates(slot);
  }

  /** One draft → verify → accept round for a batch of decoding sequences. */
  speculativeRound(r: NativeRound): Promise<NativeRoundResult> {
    return this.model.speculativeRound(r);
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** The draft's native config and weights; the target's embedding / lm_head where the draft has none. */
function nativeDraft(d: DraftBinding, w: Map<string, NativeTensor>, device: DeviceName) {
  const c = d.config;
  const rope = c.ropeScaling ? scaledRope(c.ropeTheta, c.headDim, c.ropeScaling) : undefined;
  const g = (k: string) => w.get(`draft.${k}`);
  return {
    slots: d.slots,
    config: {
      hiddenSize: c.hiddenSize, targetHiddenSize: c.targetHiddenSize, numHeads: c.numHeads, numKvHeads: c.numKvHeads,
      headDim: c.headDim, intermediateSize: c.intermediateSize, vocabSize: c.vocabSize, draftVocabSize: c.draftVocabSize,
      rmsNormEps: c.rmsNormEps, ropeTheta: c.ropeTheta, ropeScale: rope?.scale ?? 1, rotaryDim: c.headDim, normBeforeResidual: c.normBeforeResidual,
      normBeforeFc: c.normBeforeFc, fcNorm: c.fcNorm, applyFinalNorm: c.normOutput.applyFinalNorm, feedPostNorm: c.normOutput.feedPostNorm,
    },
    weights: {
      embed: d.ownEmbedding ? g("embed")! : w.get("embed")!,
      lmHead: c.usesTargetLmHead ? (w.get("lmHead") ?? w.get("embed")!) : g("lmHead")!,
      fc: g("fc")!, fcBias: g("fcBias"), inputNorm: g("inputNorm"), fcNorm: g("fcNorm"),
      hiddenNorm: g("hiddenNorm")!, inputLayernorm: g("inputLayernorm")!, postNorm: g("postNorm")!, finalNorm: g("finalNorm")!,
      qkv: g("qkv")!, o: g("o")!, gateUp: g("gateUp")!, down: g("down")!,
      vocabMap: d.vocabMap && native().NativeTensor.fromBytes(d.vocabMap, "i32", [d.vocabMap.length], device),
      ropeInvFreq: rope && native().NativeTensor.fromBytes(rope.invFreq, "f32", [rope.invFreq.length], device),
    },
  };
}

/** bf16 bytes of every weight the forward reads (a tied embedding counted once). */
export function weightBytes(cfg: TargetConfig): number {
  return qwenWeightSpecs(cfg).reduce((n, s) => n + 2 * s.parts.reduce((m, [, sh]) => m + sh.reduce((a, b) => a * b, 1), 0), 0);
}

/**
 * KV pages for an engine: on the CPU what `wanted` asks; on CUDA as many of those as fit in
 * `fraction` of the memory left after the weights and step buffers, ERR_OUT_OF_MEMORY (with the
 * numbers) when not even `atLeast` pages (one full-length request) fit.
 */
export function kvCachePages(
  cfg: TargetConfig, device: DeviceName,
  o: { wanted: number; atLeast: number; pageSize: number; maxStepTokens: number; fraction: number; source: string; draft?: DraftAttachment },
): number {
  if (device !== "cuda") return o.wanted;
  const gpu = cudaDevice(o.source);
  const free = gpu.freeBytes;
  const steps = o.maxStepTokens * (6 * cfg.hiddenSize + 4 * cfg.intermediateSize + 3 * cfg.numHeads * cfg.headDim) * 2 + (256 << 20);
  const weights = weightBytes(cfg) + (o.draft?.plan.plan.bytes ?? 0);
  const left = free - weights - steps;
  const perPage = kvCacheBytes(cfg, 1, o.pageSize, device, o.draft?.config);
  const fit = Math.floor((left * o.fraction) / perPage);
  if (fit < o.atLeast)
    throw new Eagle3Error(
      ErrorCode.OUT_OF_MEMORY,
      `${o.source}: ${gib(weights)} GiB of weights + ${gib(steps)} GiB of step buffers + ${gib(o.atLeast * perPage)} GiB ` +
        `of KV cache for one full-length request need more than the ${gib(free)} GiB free on ${gpu.name}`,
    );
  return Math.min(o.wanted, fit);
}

/**
 * KV bytes for `pages` pages: K and V of every layer, in the device's activation type; with a
 * draft, also its one layer's K and V and the three features kept per token for its catch-up.
 */
export function kvCacheBytes(cfg: TargetConfig, pages: number, pageSize: number, device: DeviceName, draft?: DraftConfig): number {
  const elem = device === "cuda" ? 2 : 4;
  const perToken = 2 * cfg.numLayers * cfg.numKvHeads * cfg.headDim + (draft ? 2 * draft.numKvHeads * draft.headDim + 3 * draft.targetHiddenSize : 0);
  return pages * pageSize * perToken * elem;
}

/** The GPU models run on, or ERR_NO_CUDA_DEVICE saying why there is none for `what`. */
function cudaDevice(what: string): GpuInfo {
  const st = native().cudaStatus();
  if (st.error || st.gpus.length === 0)
    throw new Eagle3Error(ErrorCode.NO_CUDA_DEVICE, `no usable CUDA device for ${what}: ${st.error ?? "none found"}`);
  return st.gpus[0];
}

function checkDeviceMemory(device: DeviceName, needed: number, what: string): void {
  if (device !== "cuda") return;
  const gpu = cudaDevice(what);
  if (needed > gpu.freeBytes)
    throw new Eagle3Error(
      ErrorCode.OUT_OF_MEMORY,
      `${what} needs ${gib(needed)} GiB on ${gpu.name} (weights + KV cache) but only ${gib(gpu.freeBytes)} GiB is free`,
    );
}

const gib = (b: number) => (b / 2 ** 30).toFixed(2);
