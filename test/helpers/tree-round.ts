/**
 * One speculative round's tree ops (expand each level, build, greedy accept, commit, KV
 * compaction) driven through one backend's NativeOps on seeded random inputs, every output read
 * back. The CPU run is checked against the tree rules in test/unit; the CUDA run must equal it.
 */
import type { DeviceName, NativeOps, NativeTensor } from "../../lib/native.js";
import { poisoned, rng, tensor } from "./tensors.js";

export interface TreeCase { batch: number; steps: number; topk: number; nodes: number; seed: number }

export interface TreeRoundOut {
  levels: Array<{ tokens: Int32Array; mask: BigInt64Array; parentRows: Int32Array }>;
  score: Float32Array; token: Int32Array; parent: Int32Array;
  verify: { tokens: Int32Array; positions: Int32Array; mask: BigInt64Array; parent: Int32Array };
  argmax: Int32Array; committed: Int32Array;
  path: Int32Array; accepted: Int32Array; bonus: Int32Array;
  outTokens: Int32Array; featureRows: Int32Array; lastRows: Int32Array;
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
    ops.treeExpand(tree, level, t(probRows(rows, width, r), "f32", [rows, width]), t(ids(rows * width), "i32", [rows, width]), tokens, mask,
      level > 1 ? parentRows : null);
    levels.push({ tokens: i32(tokens), mask: i64(mask), parentRows: i32(parentRows) });
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
  return {
    levels, score: f32(tree.score), token: i32(tree.token), parent: i32(tree.parent),
    verify: { tokens: vTokens, positions: i32(verify.positions), mask: i64(verify.mask), parent: vParent },
    argmax, committed, path: i32(path), accepted: i32(accepted), bonus: i32(bonus),
    outTokens: i32(outTokens), featureRows: i32(featureRows), lastRows: i32(lastRows),
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
