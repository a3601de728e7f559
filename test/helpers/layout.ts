/** Builds attention layouts (ragged sequences over a randomly paged KV cache) for kernel tests. */
import type { DeviceName, NativeAttentionLayout } from "../../lib/native.js";
import { tensor } from "./tensors.js";

export interface SeqSpec {
  qLen: number;
  kvLen: number;
  /** Per new token: bit j = sees new token j (tree mode); omitted = causal. */
  treeMask?: bigint[];
}

export interface HostLayout {
  seqs: SeqSpec[];
  pageSize: number;
  maxPages: number;
  qStart: Int32Array;
  kvLen: Int32Array;
  pageTable: Int32Array;
  tokenSeq: Int32Array;
  slots: Int32Array;
  treeMask?: BigInt64Array;
  numTokens: number;
}

/** Pages are dealt from a random permutation of the pool, so sequences interleave in memory. */
export function hostLayout(seqs: SeqSpec[], pageSize: number, numPages: number, r: () => number): HostLayout {
  const maxPages = Math.max(1, ...seqs.map((s) => Math.ceil(s.kvLen / pageSize)));
  const pool = Array.from({ length: numPages }, (_, i) => i);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  const T = seqs.reduce((n, s) => n + s.qLen, 0);
  const qStart = new Int32Array(seqs.length + 1), kvLen = new Int32Array(seqs.length);
  const pageTable = new Int32Array(seqs.length * maxPages), tokenSeq = new Int32Array(T), slots = new Int32Array(T);
  const tree = seqs.some((s) => s.treeMask);
  const treeMask = tree ? new BigInt64Array(T) : undefined;
  let t = 0, next = 0;
  seqs.forEach((s, i) => {
    qStart[i] = t;
    kvLen[i] = s.kvLen;
    const pages = Math.ceil(s.kvLen / pageSize);
    if (next + pages > numPages) throw new Error("page pool too small");
    for (let p = 0; p < pages; p++) pageTable[i * maxPages + p] = pool[next++];
    for (let j = 0; j < s.qLen; j++) {
      const ctx = s.kvLen - s.qLen + j;
      tokenSeq[t + j] = i;
      slots[t + j] = pageTable[i * maxPages + Math.floor(ctx / pageSize)] * pageSize + (ctx % pageSize);
      if (treeMask) treeMask[t + j] = BigInt.asIntN(64, s.treeMask ? s.treeMask[j] : (1n << BigInt(j + 1)) - 1n);
    }
    t += s.qLen;
  });
  qStart[seqs.length] = T;
  return { seqs, pageSize, maxPages, qStart, kvLen, pageTable, tokenSeq, slots, treeMask, numTokens: T };
}

export function deviceLayout(h: HostLayout, device: DeviceName): NativeAttentionLayout {
  return {
    numSeqs: h.seqs.length,
    numTokens: h.numTokens,
    pageSize: h.pageSize,
    maxPages: h.maxPages,
    maxQLen: Math.max(...h.seqs.map((s) => s.qLen)),
    maxKvLen: Math.max(...h.seqs.map((s) => s.kvLen)),
    qStart: tensor(h.qStart, "i32", [h.qStart.length], device),
    kvLen: tensor(h.kvLen, "i32", [h.kvLen.length], device),
    pageTable: tensor(h.pageTable, "i32", [h.seqs.length, h.maxPages], device),
    tokenSeq: tensor(h.tokenSeq, "i32", [h.tokenSeq.length], device),
    slots: tensor(h.slots, "i32", [h.slots.length], device),
    treeMask: h.treeMask ? tensor(h.treeMask, "i64", [h.treeMask.length], device) : undefined,
  };
}

/** A random tree of n nodes in topological order: node j's parent is a random earlier node. */
export function randomTreeMask(n: number, r: () => number): bigint[] {
  const mask: bigint[] = [];
  for (let j = 0; j < n; j++) {
    const parent = j === 0 ? -1 : Math.floor(r() * j);
    mask.push((parent >= 0 ? mask[parent] : 0n) | (1n << BigInt(j)));
  }
  return mask;
}
