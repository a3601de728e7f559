/**
 * The draft-tree ops of the CPU reference against the tree rules written out independently here
 * (eagle3-reference.md §3–4): best-K expansion with ties to the lower flat index, ancestor masks,
 * the best N − 1 candidates as the verified tree, greedy acceptance, the commit and KV compaction.
 */
import { describe, expect, it } from "vitest";
import { native } from "../../lib/native.js";
import { TREE_CASES, runTreeRound } from "../helpers/tree-round.js";

/** Indices of `score` in [lo, hi) ordered best first (ties: lower index), the first k of them in index order. */
function best(score: Float32Array, lo: number, hi: number, k: number): number[] {
  const idx = Array.from({ length: hi - lo }, (_, i) => lo + i);
  idx.sort((a, b) => (score[b] - score[a]) || (a - b));
  return idx.slice(0, k).sort((a, b) => a - b);
}

/** m with bit i set, as the signed 64-bit value the tensors hold. */
const bit = (m: bigint, i: number) => BigInt.asIntN(64, m | (1n << BigInt(i)));

describe("tree ops (CPU reference) follow the tree rules", () => {
  it.each(TREE_CASES)("batch $batch, steps $steps, topk $topk, $nodes nodes", (c) => {
    const o = runTreeRound(new (native().NativeOps)("cpu"), "cpu", c);
    const { batch: B, steps: S, topk: K, nodes: N } = c;
    const C = K + (S - 1) * K * K;
    let acceptedSome = 0, rejectedSome = 0;
    for (let b = 0; b < B; b++) {
      const score = o.score.subarray(b * C, (b + 1) * C), token = o.token.subarray(b * C, (b + 1) * C);
      const parent = o.parent.subarray(b * C, (b + 1) * C);
      // Expansion, level by level.
      let live = Array.from({ length: K }, (_, j) => j);
      const liveMask: bigint[][] = [];
      for (let l = 1; l <= S; l++) {
        const out = o.levels[l - 1];
        if (l > 1) {
          const base = K + (l - 2) * K * K;
          for (let i = 0; i < K * K; i++) {
            expect(parent[base + i]).toBe(live[Math.floor(i / K)]);
          }
          const prev = live;
          live = best(score, base, base + K * K, K);
          live.forEach((node, j) => {
            const a = prev.indexOf(parent[node]);
            expect(out.parentRows[b * K + j]).toBe(b * K + a);
            expect(out.mask[b * K + j]).toBe(bit(liveMask[l - 2][a], (l - 1) * K + j));
            // The next step's recurrent state is the parent row's.
            const row = (x: Int32Array, i: number) => Array.from(x.subarray(4 * i, 4 * i + 4));
            expect(row(out.statesOut, b * K + j)).toEqual(row(out.statesIn, b * K + a));
          });
        } else {
          live.forEach((_, j) => expect(out.mask[b * K + j]).toBe(bit(0n, j)));
        }
        liveMask.push(live.map((_, j) => out.mask[b * K + j]));
        live.forEach((node, j) => expect(out.tokens[b * K + j]).toBe(token[node]));
      }
      // The verified tree: the best N − 1 candidates in flat order under the root.
      const chosen = best(score, 0, C, N - 1);
      const nodeOf = new Map(chosen.map((flat, i) => [flat, i + 1]));
      const v = (a: ArrayLike<number | bigint>, i: number) => a[b * N + i];
      expect(v(o.verify.positions, 0)).toBe(o.committed[b]);
      expect(v(o.verify.mask, 0)).toBe(1n);
      expect(v(o.verify.parent, 0)).toBe(-1);
      chosen.forEach((flat, i) => {
        const idx = i + 1, depth = flat < K ? 1 : 2 + Math.floor((flat - K) / (K * K));
        const p = parent[flat] < 0 ? 0 : nodeOf.get(parent[flat])!;
        expect(p, "parents are chosen before their children").toBeDefined();
        expect(v(o.verify.tokens, idx)).toBe(token[flat]);
        expect(v(o.verify.positions, idx)).toBe(o.committed[b] + depth);
        expect(v(o.verify.parent, idx)).toBe(p);
        expect(v(o.verify.mask, idx)).toBe(bit(v(o.verify.mask, p) as bigint, idx));
      });
      // Greedy acceptance: children equal to their parent's argmax, then the bonus.
      const path: number[] = [];
      let cur = 0;
      for (;;) {
        let next = -1;
        for (let j = cur + 1; j < N && next < 0; j++)
          if (v(o.verify.parent, j) === cur && v(o.verify.tokens, j) === o.argmax[b * N + cur]) next = j;
        if (next < 0) break;
        path.push(next);
        cur = next;
      }
      expect(o.accepted[b]).toBe(path.length);
      expect(Array.from(o.path.subarray(b * S, b * S + path.length))).toEqual(path);
      expect(o.bonus[b]).toBe(o.argmax[b * N + cur]);
      if (path.length) acceptedSome++;
      if (path.length < S) rejectedSome++;
      // Commit: extend tokens, feature rows and the last row.
      const m = path.length, bonus = o.bonus[b];
      const wantTokens = [...path.map((n) => v(o.verify.tokens, n)), ...Array(S + 1 - m).fill(bonus)];
      expect(Array.from(o.outTokens.subarray(b * (S + 1), (b + 1) * (S + 1)))).toEqual(wantTokens);
      const rows = [b * N, ...path.map((n) => b * N + n)];
      while (rows.length < S + 1) rows.push(rows[m]);
      expect(Array.from(o.featureRows.subarray(b * (S + 1), (b + 1) * (S + 1)))).toEqual(rows);
      expect(o.lastRows[b]).toBe(b * (S + 1) + m);
      // The next round's inputs: the root and the accepted nodes are cached, the bonus is the root.
      expect([o.nextCommitted[b], o.nextRoots[b]]).toEqual([o.committed[b] + m + 1, bonus]);
      // Step layouts from the committed length: context lengths, cache slots through the page table, positions.
      const pages = o.pageTable.length / B;
      for (const l of o.layouts) {
        const L = o.committed[b], ctx = Array.from({ length: l.q }, (_, j) => L + l.first + j);
        expect(l.kvLen[b]).toBe(L + l.first + l.q);
        expect(Array.from(l.slots.subarray(b * l.q, (b + 1) * l.q)))
          .toEqual(ctx.map((c) => o.pageTable[b * pages + Math.floor(c / o.pageSize)] * o.pageSize + (c % o.pageSize)));
        if (l.positions) expect(Array.from(l.positions.subarray(b * l.q, (b + 1) * l.q))).toEqual(ctx.map((_, j) => L + l.posBase + j * l.posStep));
      }
    }
    // KV compaction: in every plane, context committed + path[k − 1] moves to committed + k, in order.
    const pool = o.poolBefore.slice(), planes = pool.length / (o.slots * o.rowBytes), pages = o.pageTable.length / B;
    for (let b = 0; b < B; b++) {
      const slot = (ctx: number) => o.pageTable[b * pages + Math.floor(ctx / o.pageSize)] * o.pageSize + (ctx % o.pageSize);
      for (let k = 1; k <= o.accepted[b]; k++) {
        const src = slot(o.committed[b] + o.path[b * S + k - 1]), dst = slot(o.committed[b] + k);
        for (let p = 0; p < planes; p++)
          pool.copyWithin((p * o.slots + dst) * o.rowBytes, (p * o.slots + src) * o.rowBytes, (p * o.slots + src + 1) * o.rowBytes);
      }
    }
    expect(Buffer.compare(Buffer.from(pool), Buffer.from(o.poolAfter))).toBe(0);
    if (B > 2) expect(acceptedSome > 0 && rejectedSome > 0, "both accepted and rejected paths are exercised").toBe(true);
  });

  it("step_layout refuses a context past the page table with a coded error", () => {
    const ops = new (native().NativeOps)("cpu");
    const T = native().NativeTensor;
    const i32 = (a: number[]) => T.fromBytes(Int32Array.from(a), "i32", [a.length], "cpu");
    expect(() => ops.stepLayout(i32([7]), T.fromBytes(Int32Array.from([0, 1]), "i32", [1, 2], "cpu"), 4, 2, 0, 0, 1, null, i32([0]), i32([0, 0])))
      .toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringContaining("context 8 of sequence 0 past its 2 pages") }));
  });

  it("refuses mismatched shapes with a coded error", () => {
    const ops = new (native().NativeOps)("cpu");
    const T = native().NativeTensor;
    const tree = {
      steps: 2, topk: 2, score: T.empty("f32", [1, 6], "cpu"), token: T.empty("i32", [1, 6], "cpu"),
      parent: T.empty("i32", [1, 6], "cpu"), mask: T.empty("i64", [1, 6], "cpu"), live: T.empty("i32", [1, 2], "cpu"),
    };
    expect(() => ops.treeExpand(tree, 3, T.empty("f32", [2, 2], "cpu"), T.empty("i32", [2, 2], "cpu")))
      .toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringContaining("level 3") }));
    expect(() => ops.treeExpand({ ...tree, score: T.empty("f32", [1, 5], "cpu") }, 1, T.empty("f32", [1, 2], "cpu"), T.empty("i32", [1, 2], "cpu")))
      .toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringContaining("tree candidates") }));
    // States gathered at level 1 (no parent rows yet), or into a destination of the wrong size.
    const states = (rows: number) => T.empty("i32", [rows, 4], "cpu");
    expect(() => ops.treeExpand(tree, 1, T.empty("f32", [1, 2], "cpu"), T.empty("i32", [1, 2], "cpu"), null, null, null, states(2), states(2)))
      .toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringContaining("tree_expand states") }));
    expect(() => ops.treeExpand(tree, 2, T.empty("f32", [2, 2], "cpu"), T.empty("i32", [2, 2], "cpu"), null, null, T.empty("i32", [2], "cpu"), states(2), states(3)))
      .toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringContaining("tree_expand states") }));
  });
});
