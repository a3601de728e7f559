/**
 * Greedy continuations that should be equal but were computed by different bf16 kernels: equal,
 * or diverging only where the two tokens are near-tied under the model's own logits.
 */
import { expect } from "vitest";
import { buildStep } from "../../lib/batch/step-plan.js";
import { GREEDY, Sequence } from "../../lib/batch/sequence.js";
import type { TargetModel } from "../../lib/model/target.js";


export async function lastLogits(model: TargetModel, ids: number[]): Promise<Float32Array> {
  const s = new Sequence(0, ids.length, ids, 1, GREEDY, new Set());
  s.pages = Array.from({ length: Math.ceil(ids.length / model.options.pageSize) }, (_, k) => k);
  const res = await model.step(buildStep([{ seq: s, count: ids.length, samples: true }], { wantLogits: true }));
  return res.logits!;
}

/** Asserts equality up to a near-tie (gap ≤ tolerance × max |logit|) at the first difference. */
export async function expectSameOrNearTie(model: TargetModel, prompt: number[], ours: number[], theirs: number[], tolerance: number, label: string) {
  const j = ours.findIndex((t, k) => t !== theirs[k]);
  if (j < 0 && ours.length === theirs.length) return;
  const at = j < 0 ? Math.min(ours.length, theirs.length) : j;
  const logits = await lastLogits(model, [...prompt, ...ours.slice(0, at)]);
  const gap = Math.abs(logits[ours[at]] - logits[theirs[at]]);
  const scale = logits.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  console.log(`${label}: diverges at token ${at} (logit gap ${gap.toFixed(4)} of ${scale.toFixed(3)})`);
  expect(gap / scale, `${label} token ${at}`).toBeLessThan(tolerance);
}
