/**
 * The cost of speculative rounds at a real shape, with random target and draft weights (so the
 * acceptance is meaningless; the costs are not): per batch size, the device time of a plain decode
 * step beside a round replayed from its graph (wall and device, and the host's time in native code
 * and outside it), rounds pipelined as the scheduler runs them (each chained, launched before the
 * previous one's tokens are back), and the phases of profiled rounds (draft, verification,
 * acceptance + commit), each replayed from a graph of its own.
 */
import { PageAllocator } from "../batch/page-allocator.js";
import { GREEDY, Sequence } from "../batch/sequence.js";
import { buildSpecPrefill, buildStep, packSampling } from "../batch/step-plan.js";
import type { TargetConfig } from "../model/config.js";
import { TargetModel } from "../model/target.js";
import type { DeviceName, NativeRoundResult } from "../native.js";
import { type TreeShape, TreePolicy } from "../spec/tree-policy.js";
import { median, round } from "./stats.js";

export interface RoundBenchOptions {
  preset: string;
  config: TargetConfig;
  batches: number[];
  context: number;
  rounds: number;
  tree?: TreeShape;
  seed: number;
  device?: DeviceName;
  log?: (line: string) => void;
}

export interface RoundRow {
  batch: number;
  tree: TreeShape;
  context: number;
  /** Device ms of a decode step (graph) at this batch and context. */
  decodeMs: number;
  /** A round replayed from its graph: wall and device ms, and the host's share of the wall. */
  roundWallMs: number;
  roundDeviceMs: number;
  hostShare: number;
  /** Rounds pipelined (chained): ms between two rounds' tokens, and the share of it the device was idle. */
  pipelinedWallMs: number;
  pipelinedHostShare: number;
  /**
   * Host ms of a round: in native code staging and reading back (checks, upload, download), the
   * rest of the native call's host time, and outside the call (JS, N-API, the event loop's hand-offs).
   */
  nativeHostMs: number;
  otherHostMs: number;
  jsHostMs: number;
  /** Profiled rounds (each phase replayed from its own graph): device ms per phase. */
  draftMs: number;
  /** The draft phase per draft forward (S − 1 of them), as a share of the decode step. */
  draftStepShare: number;
  verifyMs: number;
  verifyRatio: number;
  acceptMs: number;
}

const PAGE = 16;
const PROFILED = 8;
const WARMUP = 3;
const DECODES = 12;

export async function benchRounds(o: RoundBenchOptions): Promise<RoundRow[]> {
  const log = o.log ?? (() => {});
  const policy = new TreePolicy(o.tree);
  const maxBatch = Math.max(...o.batches);
  const per = Math.ceil((o.context + 1 + (2 * WARMUP + 2 * o.rounds + PROFILED) * (policy.scratchTokens + 1) + WARMUP + DECODES + PAGE) / PAGE);
  const maxStepTokens = Math.max(2048, policy.verifyRows(maxBatch));
  const model = TargetModel.random(o.preset, o.config, {
    device: o.device ?? "cuda", maxStepTokens, maxLogitRows: policy.verifyRows(maxBatch), numPages: per * maxBatch, pageSize: PAGE,
  }, o.seed, maxBatch);
  const rows: RoundRow[] = [];
  try {
    const pages = new PageAllocator(per * maxBatch);
    for (const B of o.batches) {
      const tree = policy.shapeFor(B);
      const seqs = Array.from({ length: B }, (_, i) => {
        const s = new Sequence(i, o.context, Array.from({ length: o.context }, () => Math.floor(Math.random() * o.config.vocabSize)), 1 << 20, GREEDY, new Set());
        s.pages = pages.alloc(per)!;
        s.slot = i;
        return s;
      });
      // Prefill with the draft, one sequence at a time in chunks; the last chunk samples the root.
      for (const s of seqs)
        while (s.cached < o.context) {
          const count = Math.min(o.context - s.cached, maxStepTokens), samples = s.cached + count === o.context;
          const res = await model.prefillSpeculative(buildSpecPrefill([{ seq: s, count, samples }], (e) => e.samples));
          s.cached += count;
          if (samples) s.tokens.push(res.tokens![0]);
        }
      const maxPages = per;
      const pageTable = new Int32Array(B * maxPages);
      seqs.forEach((s, i) => pageTable.set(s.pages, i * maxPages));
      const wall: number[] = [], call: number[] = [], device: number[] = [], native: number[] = [], draft: number[] = [], verify: number[] = [], accept: number[] = [];
      const plan = (committed: Int32Array, chained: boolean, profile = false) => ({
        ...tree, slots: Int32Array.from(seqs, (s) => s.slot), committed, roots: Int32Array.from(seqs, (s) => (chained ? 0 : s.tokens[s.cached])),
        pageTable, maxPages, sampling: packSampling(seqs), profile, chained,
      });
      const apply = (res: NativeRoundResult) => {
        let at = 0;
        seqs.forEach((s, i) => {
          s.tokens.push(...res.tokens.subarray(at, at + res.counts[i]));
          s.cached += res.counts[i];
          at += res.counts[i];
        });
      };
      for (let r = 0; r < WARMUP + o.rounds + PROFILED; r++) {
        const profile = r >= WARMUP + o.rounds;
        const t0 = performance.now();
        const res = await model.speculativeRound(plan(Int32Array.from(seqs, (s) => s.cached), false, profile));
        const ms = performance.now() - t0;
        apply(res);
        if (res.captured) continue;  // recorded its graphs: slower than its kind
        if (profile) {
          draft.push(res.draftMs);
          verify.push(res.verifyMs);
          accept.push(res.acceptMs);
        } else if (r >= WARMUP) {
          wall.push(ms);
          call.push(res.callMs);
          device.push(res.deviceMs);
          native.push(res.stageMs + res.readMs);
        }
      }
      // Pipelined: each round chained to the one in flight, on bounds of the committed lengths.
      const piped: number[] = [];
      let bounds = Int32Array.from(seqs, (s) => s.cached);
      let pending: Promise<NativeRoundResult> | undefined = model.speculativeRound(plan(bounds, false));
      let last = performance.now();
      for (let r = 0; pending; r++) {
        bounds = bounds.map((c) => c + tree.steps + 1);
        const next = r + 1 < WARMUP + o.rounds ? model.speculativeRound(plan(bounds, true)) : undefined;
        const res = await pending;
        const now = performance.now();
        apply(res);
        if (r >= WARMUP && !res.captured) piped.push(now - last);
        last = now;
        pending = next;
      }
      // Decode steps on the same sequences (their drafts fall behind, which no longer matters).
      const decode: number[] = [];
      for (let i = 0; i < WARMUP + DECODES; i++) {
        const res = await model.step({ ...buildStep(seqs.map((seq) => ({ seq, count: 1, samples: true }))), wantTiming: true });
        seqs.forEach((s, j) => {
          s.cached++;
          s.tokens.push(res.tokens![j]);
        });
        if (i >= WARMUP) decode.push(res.deviceMs!);
      }
      for (const s of seqs) pages.release(s.pages);
      const d = median(decode), rw = median(wall), rc = median(call), rd = median(device), dr = median(draft), v = median(verify), nh = median(native);
      const pw = median(piped);
      rows.push({
        batch: B, tree, context: o.context, decodeMs: round(d, 3), roundWallMs: round(rw, 3), roundDeviceMs: round(rd, 3),
        hostShare: round(Math.max(0, rw - rd) / rw, 3), pipelinedWallMs: round(pw, 3), pipelinedHostShare: round(Math.max(0, pw - rd) / pw, 3), nativeHostMs: round(nh, 3), otherHostMs: round(Math.max(0, rc - rd - nh), 3), jsHostMs: round(Math.max(0, rw - rc), 3),
        draftMs: round(dr, 3),
        draftStepShare: round(dr / Math.max(1, tree.steps - 1) / d, 3), verifyMs: round(v, 3), verifyRatio: round(v / d, 3),
        acceptMs: round(median(accept), 3),
      });
      log(`batch ${B}: ${JSON.stringify(rows.at(-1))}`);
    }
  } finally {
    model.dispose();
  }
  return rows;
}

export function roundTable(preset: string, rows: RoundRow[]): string {
  return [
    `${preset}, random target and draft weights: a round's costs against a decode step`,
    "",
    "| batch | tree S/K/N | decode ms | round wall ms | round device ms | host share (staging / other native / JS ms) | pipelined wall ms (host share) | draft ms (per step, of decode) | verify ms (of decode) | accept + commit ms |",
    "|---:|---|---:|---:|---:|---|---|---|---|---:|",
    ...rows.map((r) => `| ${r.batch} | ${r.tree.steps}/${r.tree.topk}/${r.tree.draftTokens} | ${r.decodeMs} | ${r.roundWallMs} | ${r.roundDeviceMs} | ` +
      `${(100 * r.hostShare).toFixed(1)}% (${r.nativeHostMs} / ${r.otherHostMs} / ${r.jsHostMs}) | ${r.pipelinedWallMs} (${(100 * r.pipelinedHostShare).toFixed(1)}%) | ${r.draftMs} (${(100 * r.draftStepShare).toFixed(1)}%) | ${r.verifyMs} (${r.verifyRatio}×) | ${r.acceptMs} |`),
  ].join("\n");
}
