/** Packs one step (which sequences advance by how many tokens) into the native step layout. */
import { Eagle3Error, ErrorCode } from "../errors.js";
import type { NativeSpecPrefill, NativeStep } from "../native.js";
import type { Sequence } from "./sequence.js";

export interface StepEntry {
  seq: Sequence;
  /** New tokens this step: seq.tokens[start, start + count), start = seq.cached unless given. */
  count: number;
  start?: number;
  /** Whether the step reaches the sequence's last token, so it samples the next. */
  samples: boolean;
  /**
   * The one new token is still being sampled, in this row, by the step before (in flight): it is
   * fed on the device, at position seq.cached + 1. Every entry of a step is fed, or none.
   */
  fedFrom?: number;
}

export const SAMPLING_ROW_BYTES = 32;

export function buildStep(entries: readonly StepEntry[], opts: { wantLogits?: boolean; wantHidden?: boolean } = {}): NativeStep {
  const T = entries.reduce((n, e) => n + e.count, 0);
  const S = entries.length;
  const maxPages = Math.max(1, ...entries.map((e) => e.seq.pages.length));
  const tokens = new Int32Array(T);
  const positions = new Int32Array(T);
  const qStart = new Int32Array(S + 1);
  const kvLen = new Int32Array(S);
  const pageTable = new Int32Array(S * maxPages);
  const rows: number[] = [];
  const sampled: Sequence[] = [];
  const fed = entries.some((e) => e.fedFrom !== undefined);
  if (fed && !entries.every((e) => e.fedFrom !== undefined && e.count === 1 && e.samples))
    throw new Eagle3Error(ErrorCode.INVALID_ARGUMENT, "a step with fed tokens decodes one fed token per sequence");
  let t = 0;
  entries.forEach((e, i) => {
    const { seq, count } = e;
    const start = e.start ?? (fed ? seq.cached + 1 : seq.cached);
    qStart[i] = t;
    if (!fed) tokens.set(seq.tokens.slice(start, start + count), t);
    for (let j = 0; j < count; j++) positions[t + j] = start + j;
    kvLen[i] = start + count;
    pageTable.set(seq.pages, i * maxPages);
    t += count;
    if (e.samples) {
      rows.push(t - 1);
      sampled.push(seq);
    }
  });
  qStart[S] = T;
  return {
    tokens, positions, qStart, kvLen, pageTable, maxPages,
    logitRows: Int32Array.from(rows),
    sampling: packSampling(sampled),
    feedback: fed ? Int32Array.from(entries, (e) => e.fedFrom!) : undefined,
    wantLogits: opts.wantLogits,
    wantHidden: opts.wantHidden,
  };
}

/**
 * A prefill step whose draft runs over the same tokens: the draft pairs the feature of position p
 * with the token at p + 1 (eagle3-reference.md §2.5), -1 where that is the token this step
 * samples. `final(e)`: the entry's chunk ends where the draft must keep its state.
 */
export function buildSpecPrefill(entries: readonly StepEntry[], final: (e: StepEntry) => boolean): NativeSpecPrefill {
  const step = buildStep(entries);
  const next = new Int32Array(step.tokens.length);
  let t = 0;
  for (const e of entries) {
    const start = e.start ?? e.seq.cached;
    for (let j = 0; j < e.count; j++) next[t + j] = start + j + 1 < e.seq.tokens.length ? e.seq.tokens[start + j + 1] : -1;
    t += e.count;
  }
  return {
    ...step,
    slots: Int32Array.from(entries, (e) => e.seq.slot),
    nextTokens: next,
    finalChunk: Uint8Array.from(entries, (e) => Number(final(e))),
  };
}

/**
 * 32 bytes per row, matching e3::SamplingParams, for a step or round about to be launched: each
 * sequence's next draw counter is taken (Sequence.takeDraw), so that no two launches share uniforms,
 * also when one is planned before the tokens of the one ahead of it are known.
 */
export function packSampling(seqs: readonly Sequence[]): Uint8Array {
  const buf = new Uint8Array(seqs.length * SAMPLING_ROW_BYTES);
  const dv = new DataView(buf.buffer);
  seqs.forEach((s, r) => {
    const o = r * SAMPLING_ROW_BYTES;
    dv.setFloat32(o, s.sampling.temperature, true);
    dv.setInt32(o + 4, s.sampling.topK, true);
    dv.setFloat32(o + 8, s.sampling.topP, true);
    dv.setBigUint64(o + 16, BigInt.asUintN(64, BigInt(s.sampling.seed)), true);
    dv.setBigUint64(o + 24, BigInt(s.takeDraw()), true);
  });
  return buf;
}
