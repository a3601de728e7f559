/**
 * One speculative round's tree ops (expand each level, build, greedy accept, commit, KV
 * compaction) driven through one backend's NativeOps on seeded random inputs, every output read
 * back. The CPU run is checked against the tree rules in test/unit; the CUDA run must equal it.
 */
import type { DeviceName, NativeOps, NativeTensor } from "../../lib/native.js";
import { poisoned, rng, tensor } from "./tensors.js";

export interface TreeCase { batch: number; steps: number; topk: number; nodes: number; seed: number }

export interface TreeRoundOut {
  /** Per level: the next step's tokens, masks and parent rows, and (from level 2) the states gathered by them. */
  levels: Array<{ tokens: Int32Array; mask: BigInt64Array; parentRows: Int32Array; statesIn: Int32Array; statesOut: Int32Array }>;
  score: Float32Array; token: Int32Array; parent: Int32Array;
  verify: { tokens: Int32Array; positions: Int32Array; mask: BigInt64Array; parent: Int32Array };
  argmax: Int32Array; committed: Int32Array;
  path: Int32Array; accepted: Int32Array; bonus: Int32Array;
  outTokens: Int32Array; featureRows: Int32Array; lastRows: Int32Array;
  nextCommitted: Int32Array; nextRoots: Int32Array;
  /** step_layout of the verify step (q N, first 0) and of a step like the draft extend (q S + 1, first 1, positions L + 2 + 3j). */
  layouts: Array<{ q: number; first: number; posBase: number; posStep: number; positions?: Int32Array; kvLen: Int32Array; slots: Int32Array }>;
  poolBefore: Uint8Array; poolAfter: Uint8Array; pageTable: Int32Array; pageSize: number; rowBytes: number; slots: number;
}

const i32 = (t: NativeTensor) => { const b = t.toBytes(); return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice(); };
const i64 = (t: NativeTensor) => { const b = t.toBytes(); return new BigInt64Array(b.buffer, b.byteOffset, b.byteLength / 8).slice(); };
const f32 = (t: NativeTensor) => { const b = t.toBytes(); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice(); };

/** Descending draft probabilities on a coarse grid, so that equal scores (ties) occur. */
function probRows(rows: number, width: number, r: () => number): Float32Array {
  const out = new Float32Array(rows * width);
  for (let i = 0; i < rows; i++) {
    const row = Array.from({ length: width }, () => Math.ceil(r() * 8) / 16).sort((a, b) => b - a);
    out.set(row, i * width);
  }
  return out;
}

export function runTreeRound(ops: NativeOps, device: DeviceName, c: TreeCase): TreeRoundOut {
  const r = rng(c.seed);
  const { batch: B, steps: S, topk: K, nodes: N } = c;
  const C = K + (S - 1) * K * K, vocab = 50;
  const ids = (n: number) => Int32Array.from({ length: n }, () => Math.floor(r() * vocab));
  const t = (data: Float32Array | Int32Array | BigInt64Array | Uint8Array, dtype: "f32" | "i32" | "i64" | "u8" | "bf16", shape: number[]) =>
    tensor(data, dtype, shape, device);
  const tree = {
    steps: S, topk: K,
    score: poisoned("f32", [B, C], device), token: poisoned("i32", [B, C], device), parent: poisoned("i32", [B, C], device),
    mask: poisoned("i64", [B, C], device), live: poisoned("i32", [B, K], device),
  };
  const levels: TreeRoundOut["levels"] = [];
  for (let level = 1; level <= S; level++) {
    const rows = level === 1 ? B : B * K, width = level === 1 ? 16 : K;
    const tokens = poisoned("i32", [B * K], device), mask = poisoned("i64", [B * K], device), parentRows = poisoned("i32", [B * K], device);
    // Rows of 16 bytes (the CUDA copy's unit), each element naming its row and column.
    const statesIn = Int32Array.from({ length: B * K * 4 }, (_, e) => 100 * Math.floor(e / 4) + (e % 4) + level);
    const statesOut = poisoned("i32", [B * K, 4], device);
    ops.treeExpand(tree, level, t(probRows(rows, width, r), "f32", [rows, width]), t(ids(rows * width), "i32", [rows, width]), tokens, mask,
      level > 1 ? parentRows : null, level > 1 ? t(statesIn, "i32", [B * K, 4]) : null, level > 1 ? statesOut : null);
    levels.push({ tokens: i32(tokens), mask: i64(mask), parentRows: i32(parentRows), statesIn, statesOut: i32(statesOut) });
  }
  const pageSize = 4, pagesPer = Math.ceil((40 + N + S + 1) / pageSize), numPages = B * pagesPer + 3;
  const perm = Array.from({ length: numPages }, (_, i) => i).sort(() => r() - 0.5);
  const pageTable = Int32Array.from({ length: B * pagesPer }, (_, i) => perm[i]);
  const committed = Int32Array.from({ length: B }, () => 1 + Math.floor(r() * 40));
  const verify = {
    tokens: poisoned("i32", [B * N], device), positions: poisoned("i32", [B * N], device),
    mask: poisoned("i64", [B * N], device), parent: poisoned("i32", [B * N], device),
  };
  const committedT = t(committed, "i32", [B]);
  ops.treeBuild(tree, t(ids(B), "i32", [B]), committedT, verify.tokens, verify.positions, verify.mask, verify.parent);
  const vTokens = i32(verify.tokens), vParent = i32(verify.parent);
  // The target agrees with a child of each node most of the time: long paths and early misses both occur.
  const argmax = Int32Array.from({ length: B * N }, (_, i) => {
    const b = Math.floor(i / N), kids = [];
    for (let j = 0; j < N; j++) if (vParent[b * N + j] === i % N && j > 0) kids.push(vTokens[b * N + j]);
    return kids.length && r() < 0.75 ? kids[Math.floor(r() * kids.length)] : Math.floor(r() * vocab);
  });
  const path = poisoned("i32", [B, S], device), accepted = poisoned("i32", [B], device), bonus = poisoned("i32", [B], device);
  ops.treeAcceptGreedy(verify.tokens, verify.parent, t(argmax, "i32", [B * N]), path, accepted, bonus);
  const outTokens = poisoned("i32", [B, S + 1], device), featureRows = poisoned("i32", [B * (S + 1)], device);
  const lastRows = poisoned("i32", [B], device);
  ops.treeCommit(verify.tokens, path, accepted, bonus, outTokens, featureRows, lastRows);
  const slots = numPages * pageSize, rowBytes = 32, planes = 4;
  const poolBefore = Uint8Array.from({ length: planes * slots * rowBytes }, () => Math.floor(r() * 256));
  const pool = t(poolBefore, "u8", [planes, slots, rowBytes]);
  ops.kvCompact(pool, t(pageTable, "i32", [B, pagesPer]), pageSize, committedT, path, accepted);
  const nextCommitted = poisoned("i32", [B], device), nextRoots = poisoned("i32", [B], device);
  ops.treeAdvance(committedT, accepted, bonus, nextCommitted, nextRoots);
  const layouts = [{ q: N, first: 0, posBase: 0, posStep: 0, withPositions: false }, { q: S + 1, first: 1, posBase: 2, posStep: 3, withPositions: true }]
    .map(({ q, first, posBase, posStep, withPositions }) => {
      const positions = poisoned("i32", [B * q], device), kvLen = poisoned("i32", [B], device), slots = poisoned("i32", [B * q], device);
      ops.stepLayout(committedT, t(pageTable, "i32", [B, pagesPer]), pageSize, q, first, posBase, posStep, withPositions ? positions : null, kvLen, slots);
      return { q, first, posBase, posStep, positions: withPositions ? i32(positions) : undefined, kvLen: i32(kvLen), slots: i32(slots) };
    });
  return {
    levels, score: f32(tree.score), token: i32(tree.token), parent: i32(tree.parent),
    verify: { tokens: vTokens, positions: i32(verify.positions), mask: i64(verify.mask), parent: vParent },
    argmax, committed, path: i32(path), accepted: i32(accepted), bonus: i32(bonus),
    outTokens: i32(outTokens), featureRows: i32(featureRows), lastRows: i32(lastRows),
    nextCommitted: i32(nextCommitted), nextRoots: i32(nextRoots), layouts,
    poolBefore, poolAfter: pool.toBytes(), pageTable, pageSize, rowBytes, slots,
  };
}

export const TREE_CASES: TreeCase[] = [
  { batch: 1, steps: 1, topk: 1, nodes: 2, seed: 1 },
  { batch: 3, steps: 3, topk: 1, nodes: 4, seed: 2 },
  { batch: 5, steps: 4, topk: 4, nodes: 12, seed: 3 },
  { batch: 2, steps: 6, topk: 8, nodes: 32, seed: 4 },
  { batch: 7, steps: 4, topk: 16, nodes: 64, seed: 5 },
  { batch: 33, steps: 5, topk: 2, nodes: 9, seed: 6 },
];

export interface SampledCase { batch: number; nodes: number; steps: number; vocab: number; seed: number }

/**
 * Sampled tree acceptance over random trees (children's tokens often among the likely ones) and
 * random logits, under varied temperature / top-k / top-p and a few greedy sequences, whose
 * outputs must stay as they were (-7).
 */
export function runSampledAcceptance(ops: NativeOps, device: DeviceName, c: SampledCase) {
  const r = rng(c.seed);
  const { batch: B, nodes: N, steps: S, vocab: V } = c;
  const tokens = new Int32Array(B * N), parent = new Int32Array(B * N), logits = new Float32Array(B * N * V);
  const params = new Uint8Array(B * 32), dv = new DataView(params.buffer);
  for (let b = 0; b < B; b++) {
    const depth = [0];
    parent[b * N] = -1;
    for (let j = 1; j < N; j++) {
      let p;
      do p = Math.floor(r() * j); while (depth[p] >= S);
      parent[b * N + j] = p;
      depth.push(depth[p] + 1);
      tokens[b * N + j] = Math.floor(r() * V);
    }
    for (let j = 0; j < N; j++) {
      const row = logits.subarray((b * N + j) * V, (b * N + j + 1) * V);
      for (let v = 0; v < V; v++) row[v] = 6 * r() - 3;
      for (let k = j + 1; k < N; k++) if (parent[b * N + k] === j && r() < 0.7) row[tokens[b * N + k]] += 10;
    }
    const o = b * 32, kind = b % 8;
    dv.setFloat32(o, kind === 7 ? 0 : [0.7, 1, 1.5][kind % 3], true);
    dv.setInt32(o + 4, kind === 1 || kind === 4 ? 20 : 0, true);
    dv.setFloat32(o + 8, kind === 2 || kind === 4 ? 0.9 : 1, true);
    dv.setBigUint64(o + 16, BigInt(1000 + b), true);
    dv.setBigUint64(o + 24, BigInt(b % 5), true);
  }
  const sentinel = (shape: number[]) => tensor(new Int32Array(shape[0] * (shape[1] ?? 1)).fill(-7), "i32", shape, device);
  const path = sentinel([B, S]), accepted = sentinel([B]), bonus = sentinel([B]);
  ops.treeAcceptSampled(tensor(tokens, "i32", [B * N], device), tensor(parent, "i32", [B * N], device),
    tensor(logits, "f32", [B * N, V], device), tensor(params, "u8", [B * 32], device),
    path, accepted, bonus);
  return { path: i32(path), accepted: i32(accepted), bonus: i32(bonus), greedy: (b: number) => b % 8 === 7 };
}
