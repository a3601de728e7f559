/**
 * Each op of one step at a preset's shapes, timed on the device in a graph of repeats of it alone:
 * the time of the whole step splits into these and what its ops' differing neighbours cost. A step
 * is `seqs` sequences of `perSeq` new tokens each: decode (perSeq 1) or the verification of a
 * chain-masked tree (perSeq > 1). Products are timed on every path that fits (own GEMV, own skinny
 * kernel, cuBLASLt) so the choice between them is a measurement.
 */
import type { TargetConfig } from "../model/config.js";
import { GREEDY, Sequence } from "../batch/sequence.js";
import { packSampling } from "../batch/step-plan.js";
import { type NativeOps, type NativeTensor, native } from "../native.js";
import { median, round } from "./stats.js";

export interface KernelRow {
  op: string;
  shape: string;
  us: number;
  gbPerS: number;
  perStep: number;
}

const COLD_BYTES = 256 << 20;

export function benchKernels(cfg: TargetConfig, seqs: number, context: number, perSeq = 1): KernelRow[] {
  const rows = seqs * perSeq;
  const addon = native();
  const ops = new addon.NativeOps("cuda");
  const T = (shape: number[], dtype: "bf16" | "f32" | "i32" = "bf16") => {
    const t = addon.NativeTensor.empty(dtype, shape, "cuda");
    if (dtype === "bf16") ops.fillNormal(t, shape.length * 31 + shape[0], 0, 0.5);
    return t;
  };
  // Replayed from a graph of `reps` runs, as in a model step: neither the host's cost of each call
  // nor its launch latency shows, the gap between kernels in a graph does.
  const time = (run: () => void, reps = 50): number => {
    run();  // plans and workspaces, before the capture
    const graph = ops.capture(() => { for (let i = 0; i < reps; i++) run(); });
    ops.replay(graph);
    const ms: number[] = [];
    for (let r = 0; r < 5; r++) {
      ops.timerStart();
      ops.replay(graph);
      ms.push(ops.timerStop() / reps);
    }
    return median(ms) * 1000;
  };
  const H = cfg.hiddenSize, I = cfg.intermediateSize, D = cfg.headDim, nh = cfg.numHeads, nkv = cfg.numKvHeads, L = cfg.numLayers;
  const out: KernelRow[] = [];
  const add = (op: string, shape: string, us: number, bytes: number, perStep: number) =>
    out.push({ op, shape, us: round(us, 2), gbPerS: round(bytes / (us * 1e-6) / 1e9, 0), perStep });
  const products: Array<[string, number, number, number]> = [
    ["qkv", (nh + 2 * nkv) * D, H, L], ["o", H, nh * D, L], ["gate_up", 2 * I, H, L], ["down", H, I, L], ["lm_head", cfg.vocabSize, H, 1],
  ];
  for (const [name, n, k, perStep] of products) {
    // One product repeated would read weights of up to 50 MB from L2; a model step reads them cold.
    // Cycling through copies that together exceed L2 several times keeps the reads in HBM.
    const x = T([rows, k]), ws = Array.from({ length: Math.min(16, Math.ceil(COLD_BYTES / (2 * n * k))) }, () => T([n, k]));
    for (const path of ["gemv", "skinny", "cublaslt"] as const) {
      if ((path === "gemv" && rows > 8) || (path === "skinny" && (rows > 32 || k % 64))) continue;
      ops.setGemmPath(path);
      const o = T([rows, n], name === "lm_head" ? "f32" : "bf16");
      let i = 0;
      add(`linear ${name} (${path})`, `${rows}×${n}×${k}`, time(() => ops.linear(x, ws[i++ % ws.length], null, o)), 2 * n * k, perStep);
    }
    if (name === "down") {
      // As the model runs it: over the activation of gate_up (fused where the skinny kernel runs).
      ops.setGemmPath("auto");
      const gu = T([rows, 2 * k]), act = T([rows, k]), o = T([rows, n]);
      let i = 0;
      add("swiglu_linear down", `${rows}×${n}×${k}`, time(() => ops.swigluLinear(gu, ws[i++ % ws.length], act, o)), 2 * n * k, perStep);
    }
    for (const w of ws) w.dispose();
  }
  ops.setGemmPath("auto");
  const x = T([rows, H]), res = T([rows, H]), wn = T([H]), o = T([rows, H]);
  add("add_rmsnorm", `${rows}×${H}`, time(() => ops.addRmsnorm(res, x, wn, 1e-6, o)), 6 * rows * H, 2 * L);
  const gu = T([rows, 2 * I]), act = T([rows, I]);
  add("silu_mul", `${rows}×${I}`, time(() => ops.siluMul(gu, act)), 6 * rows * I, L);
  // The next token from the logits: greedy, and drawn under Qwen3's defaults (T 0.7, top-k 20, top-p 0.95).
  const V = cfg.vocabSize, picked = T([rows], "i32");
  let seed = 7;
  const values = Float32Array.from({ length: rows * V }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 16);
  const logits = addon.NativeTensor.fromBytes(values, "f32", [rows, V], "cuda");
  add("argmax", `${rows}×${V}`, time(() => ops.argmax(logits, picked)), 4 * rows * V, 1);
  const params = samplingRows(rows, { temperature: 0.7, topK: 20, topP: 0.95, seed: 1 });
  const p = addon.NativeTensor.fromBytes(params, "u8", [params.length], "cuda");
  add("sample (T 0.7, top-k 20, top-p 0.95)", `${rows}×${V}`, time(() => ops.sample(logits, p, picked)), 4 * rows * V, 1);
  const what = perSeq > 1 ? `${seqs} seqs × ${perSeq} tree tokens × ${context} ctx` : `${seqs} seqs × ${context} ctx`;
  const kvBytes = seqs * context * 2 * nkv * D * 2;
  add("attention + rope", what, attention(ops, T, cfg, seqs, perSeq, context, time), kvBytes, L);
  // Tree verification writes split partials per query row: fewer splits trade parallelism for that traffic.
  for (const max of perSeq > 1 ? [1, 2, 4, 8] : []) {
    ops.setAttentionSplits(max);
    add(`attention + rope (splits ≤ ${max})`, what, attention(ops, T, cfg, seqs, perSeq, context, time), kvBytes, L);
  }
  ops.setAttentionSplits(0);
  ops.synchronize();
  return out;
}

/** SamplingParams rows (as the scheduler packs them) of `rows` requests sampling alike. */
function samplingRows(rows: number, sampling: typeof GREEDY): Uint8Array {
  return packSampling(Array.from({ length: rows }, (_, i) => new Sequence(i, 1, [0], 1, sampling, new Set())));
}

/** rope_attention as a layer runs it (one kernel at decode shapes) over its cache (a few MB: read from L2 when repeated, so optimistic). */
function attention(ops: NativeOps, T: (s: number[], d?: "bf16" | "f32" | "i32") => NativeTensor, cfg: TargetConfig, seqs: number,
  perSeq: number, context: number, time: (run: () => void) => number): number {
  const addon = native();
  const rows = seqs * perSeq, kvLen = context + perSeq;
  const page = 16, pages = Math.ceil(kvLen / page);
  const i32 = (a: Int32Array, shape: number[]) => addon.NativeTensor.fromBytes(a, "i32", shape, "cuda");
  const perRow = <A>(f: (s: number, j: number) => A) => Array.from({ length: rows }, (_, i) => f(Math.floor(i / perSeq), i % perSeq));
  const layout = {
    numSeqs: seqs, numTokens: rows, pageSize: page, maxPages: pages, maxQLen: perSeq, maxKvLen: kvLen,
    qStart: i32(Int32Array.from({ length: seqs + 1 }, (_, s) => s * perSeq), [seqs + 1]),
    kvLen: i32(new Int32Array(seqs).fill(kvLen), [seqs]),
    pageTable: i32(Int32Array.from({ length: seqs * pages }, (_, i) => i), [seqs, pages]),
    tokenSeq: i32(Int32Array.from(perRow((s) => s)), [rows]),
    slots: i32(Int32Array.from(perRow((s, j) => s * pages * page + context + j)), [rows]),
    // A chain: as costly as any tree of as many tokens (the kernel reads the mask, not its shape).
    ...(perSeq > 1 ? {
      treeMask: addon.NativeTensor.fromBytes(BigInt64Array.from(perRow((_, j) => (1n << BigInt(j + 1)) - 1n)), "i64", [rows], "cuda"),
      treeBase: i32(new Int32Array(seqs).fill(context), [seqs]),
    } : {}),
  };
  const D = cfg.headDim, nh = cfg.numHeads, nkv = cfg.numKvHeads;
  const kc = T([seqs * pages * page, nkv, D]), vc = T([seqs * pages * page, nkv, D]);
  const qkv = T([rows, (nh + 2 * nkv) * D]), q = T([rows, nh, D]), out = T([rows, nh, D]);
  const qn = T([D]), kn = T([D]);
  const pos = i32(Int32Array.from(perRow((_, j) => context + j)), [rows]);
  return time(() => ops.ropeAttention(qkv, cfg.qkNorm ? qn : null, cfg.qkNorm ? kn : null, 1e-6, pos, cfg.rotaryDim, cfg.ropeTheta,
    layout, q, kc, vc, 1 / Math.sqrt(D), out));
}
