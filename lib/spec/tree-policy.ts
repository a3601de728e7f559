/**
 * The draft tree per batch size: (steps S, top-k K, draft tokens N with the root) as SGLang
 * defines them. Wider trees pay at small batches, where verification is nearly free; at large
 * batches verification costs real compute, so the tree shrinks to a short chain.
 */
import { invalidParameter } from "../errors.js";

export interface TreeShape {
  steps: number;
  topk: number;
  draftTokens: number;
}

/** Batch-size ceilings and their trees, smallest batch first. */
const DEFAULTS: Array<[maxBatch: number, shape: TreeShape]> = [
  [2, { steps: 6, topk: 8, draftTokens: 32 }],
  [8, { steps: 5, topk: 4, draftTokens: 16 }],
  [32, { steps: 4, topk: 2, draftTokens: 6 }],
  [Infinity, { steps: 3, topk: 1, draftTokens: 4 }],
];

export class TreePolicy {
  constructor(private readonly fixed?: TreeShape) {
    if (fixed) checkShape(fixed);
  }

  shapeFor(batch: number): TreeShape {
    return this.fixed ?? DEFAULTS.find(([max]) => batch <= max)![1];
  }

  /**
   * Trees worth measuring at a batch size: its default, the next smaller default and the short
   * chain (the fixed tree alone when one was given). The speculation policy picks among them.
   */
  candidates(batch: number): TreeShape[] {
    if (this.fixed) return [this.fixed];
    const i = DEFAULTS.findIndex(([max]) => batch <= max);
    const picks = [DEFAULTS[i][1], DEFAULTS[Math.min(i + 1, DEFAULTS.length - 1)][1], DEFAULTS[DEFAULTS.length - 1][1]];
    return picks.filter((s, j) => picks.indexOf(s) === j);
  }

  /** Tree nodes one round verifies at most, over batches up to maxBatch (its logits rows). */
  verifyRows(maxBatch: number): number {
    let rows = 0;
    for (let b = 1; b <= maxBatch; b++) rows = Math.max(rows, b * Math.max(...this.candidates(b).map((s) => s.draftTokens)));
    return rows;
  }

  /** KV positions a round may write past a sequence's committed tokens (tree nodes, draft scratch, the padded draft extend). */
  get scratchTokens(): number {
    const shapes = this.fixed ? [this.fixed] : DEFAULTS.map(([, s]) => s);
    return Math.max(...shapes.map((s) => Math.max(s.draftTokens, (s.steps - 1) * s.topk + 1, s.steps + 1)));
  }
}

export function checkShape(s: TreeShape): void {
  const int = (name: keyof TreeShape, lo: number, hi: number) => {
    if (!Number.isInteger(s[name]) || s[name] < lo || s[name] > hi) throw invalidParameter(`tree.${name}`, `an integer ${lo}..${hi}`, s[name]);
  };
  int("steps", 1, 64);
  int("topk", 1, 16);
  int("draftTokens", 2, 64);
  const candidates = s.topk + (s.steps - 1) * s.topk * s.topk;
  if (s.draftTokens - 1 > candidates)
    throw invalidParameter("tree.draftTokens", `at most ${candidates + 1} for steps ${s.steps} and topk ${s.topk}`, s.draftTokens);
  if (s.steps * s.topk > 64) throw invalidParameter("tree", "steps × topk ≤ 64", `${s.steps} × ${s.topk}`);
  if (s.topk === 1 && s.draftTokens !== s.steps + 1)
    throw invalidParameter("tree.draftTokens", `steps + 1 = ${s.steps + 1} for a chain (topk 1)`, s.draftTokens);
}
