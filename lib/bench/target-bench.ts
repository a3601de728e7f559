/**
 * Plain (non-speculative) target speed on the device: decode tokens/s per batch size beside the
 * memory roofline, verification cost of n new tokens against one, prefill tokens/s beside the GEMM
 * peak, and peak memory. The native model is driven directly, without the scheduler, so the
 * figures are the forward's own; host overhead is reported as step wall time minus device time.
 * Decode steps are timed one at a time (each awaited: wall, call and device time) and pipelined
 * as the engine runs them (each launched before the previous one's tokens are back).
 */
import { PageAllocator } from "../batch/page-allocator.js";
import { GREEDY, Sequence } from "../batch/sequence.js";
import { type StepEntry, buildStep } from "../batch/step-plan.js";
import type { TargetConfig } from "../model/config.js";
import { TargetModel, weightBytes } from "../model/target.js";
import { native } from "../native.js";
import { median, round } from "./stats.js";

export interface TargetBenchOptions {
  preset: string;
  config: TargetConfig;
  batches: number[];
  context: number;
  decodeSteps: number;
  verifyTokens: number[];
  prefillTokens: number;
  seed: number;
  log?: (line: string) => void;
}

export interface DecodeRow {
  batch: number;
  context: number;
  stepMs: number;
  /** The native call's wall time on its worker thread: stepMs − callMs is the JS side and the event loop's hand-offs. */
  callMs: number;
  deviceMs: number;
  /** Steps one at a time: B · 1000 / stepMs. */
  tokensPerSecond: number;
  rooflineTokensPerSecond: number;
  fractionOfRoofline: number;
  /** Pipelined steps: wall ms per step, tokens/s and its share of the roofline. */
  pipelinedStepMs: number;
  pipelinedTokensPerSecond: number;
  pipelinedFractionOfRoofline: number;
}

export interface TargetBenchResult {
  preset: string;
  device: string;
  copyBandwidthGBs: number;
  gemmPeakTflops: number;
  weightGiB: number;
  decode: DecodeRow[];
  verify: Array<{ tokens: number; deviceMs: number; relativeToOne: number }>;
  prefill: { tokens: number; deviceMs: number; tokensPerSecond: number; tflops: number; fractionOfGemmPeak: number };
  peakMemoryGiB: number;
}

const PAGE = 16;
const WARMUP = 3;  // steps (the first ones of a batch size record graphs) left out of the timings

export async function benchTarget(o: TargetBenchOptions): Promise<TargetBenchResult> {
  const log = o.log ?? (() => {});
  const addon = native();
  const status = addon.cudaStatus();
  if (status.error) throw new Error(`no CUDA device: ${status.error}`);
  const freeBefore = status.gpus[0].freeBytes;
  const bw = addon.measureCopyBandwidth(2 * 2 ** 30, 20);
  const peak = addon.measureGemmFlops(8192, 8192, 8192, 10);
  log(`copy bandwidth ${(bw / 1e9).toFixed(0)} GB/s, bf16 GEMM ${(peak / 1e12).toFixed(0)} TFLOP/s`);

  const maxBatch = Math.max(...o.batches);
  const pagesPerSeq = Math.ceil((Math.max(o.context, o.prefillTokens) + Math.max(...o.verifyTokens) + 2 * (o.decodeSteps + WARMUP) + 1) / PAGE);
  const maxStepTokens = Math.max(o.prefillTokens, 2048, maxBatch);
  const model = TargetModel.random(o.preset, o.config, { device: "cuda", maxStepTokens, numPages: pagesPerSeq * maxBatch, pageSize: PAGE }, o.seed);
  const readBytes = weightBytes(o.config) - (o.config.tieWordEmbeddings ? 0 : 2 * o.config.vocabSize * o.config.hiddenSize);
  const kvPerToken = 2 * o.config.numLayers * o.config.numKvHeads * o.config.headDim * 2;
  try {
    const pages = new PageAllocator(pagesPerSeq * maxBatch);
    const newSeq = (id: number, len: number) => {
      const s = new Sequence(id, len, Array.from({ length: len }, () => Math.floor(Math.random() * o.config.vocabSize)), 1 << 20, GREEDY, new Set());
      s.pages = pages.alloc(pagesPerSeq)!;
      return s;
    };
    const run = async (entries: StepEntry[]) => {
      const t0 = performance.now();
      const res = await model.step({ ...buildStep(entries), wantTiming: true });
      return { wallMs: performance.now() - t0, callMs: res.callMs, deviceMs: res.deviceMs!, tokens: res.tokens };
    };
    const prefill = async (seqs: Sequence[]) => {
      for (const s of seqs)
        while (s.pending > 0) {
          const count = Math.min(s.pending, maxStepTokens);
          await run([{ seq: s, count, samples: false }]);
          s.cached += count;
        }
    };

    // A decode step's draws: each sequence's token is now cached and the draw follows it.
    const decoded = (seqs: Sequence[], tokens: Int32Array) => seqs.forEach((s, i) => {
      s.cached++;
      s.tokens.push(tokens[i]);
    });
    // Steps launched one ahead, on the tokens the step before draws (fed on the device): the mean
    // wall ms per step after the warm-up.
    const pipelined = async (seqs: Sequence[]) => {
      let inFlight = model.step(buildStep(seqs.map((seq) => ({ seq, count: 1, samples: true }))));
      let t0 = 0;
      for (let step = 0; step < WARMUP + o.decodeSteps; step++) {
        if (step === WARMUP) t0 = performance.now();
        const next = model.step(buildStep(seqs.map((seq, i) => ({ seq, count: 1, samples: true, fedFrom: i }))));
        decoded(seqs, (await inFlight).tokens!);
        inFlight = next;
      }
      const ms = (performance.now() - t0) / o.decodeSteps;
      decoded(seqs, (await inFlight).tokens!);
      return ms;
    };

    const decode: DecodeRow[] = [];
    for (const B of o.batches) {
      const seqs = Array.from({ length: B }, (_, i) => newSeq(i, o.context));
      await prefill(seqs);
      for (const s of seqs) s.tokens.push(1);  // the first decode token
      const wall: number[] = [], call: number[] = [], dev: number[] = [];
      for (let step = 0; step < o.decodeSteps; step++) {
        const res = await run(seqs.map((seq) => ({ seq, count: 1, samples: true })));
        decoded(seqs, res.tokens!);
        if (step >= WARMUP) {
          wall.push(res.wallMs);
          call.push(res.callMs);
          dev.push(res.deviceMs);
        }
      }
      const pipelinedMs = await pipelined(seqs);
      const stepMs = median(wall), deviceMs = median(dev);
      const ctx = o.context + o.decodeSteps;
      const roofline = B / ((readBytes + B * ctx * kvPerToken) / bw);
      decode.push({
        batch: B, context: o.context, stepMs: round(stepMs, 3), callMs: round(median(call), 3), deviceMs: round(deviceMs, 3),
        tokensPerSecond: round((B * 1000) / stepMs, 1), rooflineTokensPerSecond: round(roofline, 1),
        fractionOfRoofline: round((B * 1000) / stepMs / roofline, 3),
        pipelinedStepMs: round(pipelinedMs, 3), pipelinedTokensPerSecond: round((B * 1000) / pipelinedMs, 1),
        pipelinedFractionOfRoofline: round((B * 1000) / pipelinedMs / roofline, 3),
      });
      const d = decode.at(-1)!;
      log(`decode batch ${B}: ${d.tokensPerSecond} tok/s one step at a time (${d.stepMs} ms/step, device ${d.deviceMs} ms), ` +
        `${d.pipelinedTokensPerSecond} tok/s pipelined, roofline ${d.rooflineTokensPerSecond}`);
      for (const s of seqs) pages.release(s.pages);
    }

    // Verification: n new tokens (a chain tree) at batch 1 against one token, same context.
    const seq = newSeq(0, o.context);
    await prefill([seq]);
    const verify: TargetBenchResult["verify"] = [];
    const timeTokens = async (n: number) => {
      seq.tokens.length = o.context;
      seq.tokens.push(...Array.from({ length: n }, () => 7));
      const times: number[] = [];
      for (let i = 0; i < 12; i++) {
        const step = buildStep([{ seq, count: n, samples: true }]);
        step.treeMask = BigInt64Array.from({ length: n }, (_, j) => (1n << BigInt(j + 1)) - 1n);
        const res = await model.step({ ...step, wantTiming: true });
        if (i >= 2) times.push(res.deviceMs!);
      }
      return median(times);
    };
    const one = await timeTokens(1);
    for (const n of o.verifyTokens) {
      const ms = await timeTokens(n);
      verify.push({ tokens: n, deviceMs: round(ms, 3), relativeToOne: round(ms / one, 3) });
      log(`verify ${n} tokens: ${round(ms, 3)} ms = ${round(ms / one, 3)}× one token`);
    }
    pages.release(seq.pages);

    const p = newSeq(0, o.prefillTokens);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await run([{ seq: p, count: o.prefillTokens, samples: true }]);
      if (i >= 1) times.push(res.deviceMs);
    }
    const prefillMs = median(times);
    const flops = 2 * (readBytes / 2) * o.prefillTokens;
    const prefillRow = {
      tokens: o.prefillTokens, deviceMs: round(prefillMs, 2), tokensPerSecond: round((o.prefillTokens * 1000) / prefillMs, 0),
      tflops: round(flops / (prefillMs * 1e-3) / 1e12, 1), fractionOfGemmPeak: round(flops / (prefillMs * 1e-3) / peak, 3),
    };
    log(`prefill ${o.prefillTokens}: ${prefillRow.tokensPerSecond} tok/s, ${prefillRow.tflops} TFLOP/s (${prefillRow.fractionOfGemmPeak} of GEMM peak)`);
    const freeAfter = addon.cudaStatus().gpus[0].freeBytes;
    return {
      preset: o.preset, device: status.gpus[0].name, copyBandwidthGBs: round(bw / 1e9, 0), gemmPeakTflops: round(peak / 1e12, 0),
      weightGiB: round(weightBytes(o.config) / 2 ** 30, 2), decode, verify, prefill: prefillRow,
      peakMemoryGiB: round((freeBefore - freeAfter) / 2 ** 30, 2),
    };
  } finally {
    model.dispose();
  }
}
