/**
 * Every CUDA op against the float32 CPU reference on fresh random inputs, odd sizes included,
 * outputs poisoned (0xFF) before each call so an unwritten element fails the check.
 */
import { describe, expect, it } from "vitest";
import { type NativeOps, type NativeTensor, native } from "../../lib/native.js";
import { type SeqSpec, deviceLayout, hostLayout, randomTreeMask } from "../helpers/layout.js";
import { TREE_CASES, runSampledAcceptance, runTreeRound } from "../helpers/tree-round.js";
import { hasCuda, poisoned, randn, relError, rng, roundBf16, tensor, uniform, values } from "../helpers/tensors.js";

const BF16_TOL = 1.2e-2;  // bf16 storage of inputs and outputs; fp32 accumulation

describe.skipIf(!hasCuda)(hasCuda ? "CUDA kernels vs CPU reference" : "CUDA kernels (skipped: no CUDA device)", () => {
  const cpu = () => new (native().NativeOps)("cpu");
  const gpu = () => new (native().NativeOps)("cuda");

  /** The same bf16-rounded data as a CPU tensor (f32, or bf16 for weights) and a CUDA bf16 tensor. */
  function pair(data: Float32Array, shape: number[], cpuDtype: "f32" | "bf16" = "f32"): [NativeTensor, NativeTensor] {
    const d = roundBf16(data);
    return [tensor(d, cpuDtype, shape, "cpu"), tensor(d, "bf16", shape, "cuda")];
  }

  function expectClose(got: NativeTensor, want: NativeTensor, tol = BF16_TOL, what = "") {
    const err = relError(values(got), values(want));
    expect(err, `${what} relative error ${err}`).toBeLessThan(tol);
  }

  it.each(TREE_CASES)("tree ops (expand, build, accept, commit, KV compaction), batch $batch, $steps × $topk, $nodes nodes", (c) => {
    expect(runTreeRound(gpu(), "cuda", c)).toEqual(runTreeRound(cpu(), "cpu", c));
  });

  it.each([
    { batch: 256, nodes: 16, steps: 5, vocab: 1000, seed: 7, bonusAgree: 0.98 },
    { batch: 32, nodes: 16, steps: 6, vocab: 151936, seed: 8, bonusAgree: 0.75 },
  ])("tree sampled acceptance, $batch trees of $nodes nodes, vocabulary $vocab: the CPU reference's draws", (c) => {
    const want = runSampledAcceptance(cpu(), "cpu", c), got = runSampledAcceptance(gpu(), "cuda", c);
    let paths = 0, bonuses = 0, accepted = 0;
    for (let b = 0; b < c.batch; b++) {
      const m = want.accepted[b];
      if (want.greedy(b)) {
        expect([got.accepted[b], got.bonus[b]], "greedy sequences are left alone").toEqual([-7, -7]);
        continue;
      }
      accepted += m;
      paths += Number(got.accepted[b] === m &&
        got.path.subarray(b * c.steps, b * c.steps + m).join() === want.path.subarray(b * c.steps, b * c.steps + m).join());
      bonuses += Number(got.bonus[b] === want.bonus[b]);
    }
    // The same uniforms drive both. The paths hang on a few children's probabilities; the bonus
    // is an inverse CDF over the whole vocabulary, summed in f32 on the GPU and f64 on the CPU,
    // so over 152k tokens a draw may land on a neighbour.
    const sampled = c.batch - c.batch / 8;
    expect(paths / sampled, `${paths} of ${sampled} paths agree`).toBeGreaterThan(0.98);
    expect(bonuses / sampled, `${bonuses} of ${sampled} bonus tokens agree`).toBeGreaterThan(c.bonusAgree);
    expect(accepted, "paths are accepted").toBeGreaterThan(sampled / 2);
  });

  it.each([1, 7, 111, 989])("rmsnorm and add_rmsnorm, %i rows", (rows) => {
    const r = rng(rows);
    for (const n of [64, 2560, 5120]) {
      const [xc, xg] = pair(randn(rows * n, r, 2), [rows, n]);
      const [wc, wg] = pair(uniform(n, r, 0.5, 1.5), [n], "bf16");
      const [oc, og] = [poisoned("f32", [rows, n], "cpu"), poisoned("bf16", [rows, n], "cuda")];
      cpu().rmsnorm(xc, wc, 1e-6, oc);
      gpu().rmsnorm(xg, wg, 1e-6, og);
      expectClose(og, oc, BF16_TOL, `rmsnorm n=${n}`);
      const [rc, rg] = pair(randn(rows * n, r), [rows, n]);
      cpu().addRmsnorm(rc, xc, wc, 1e-6, oc);
      gpu().addRmsnorm(rg, xg, wg, 1e-6, og);
      expectClose(rg, rc, BF16_TOL, `add_rmsnorm residual n=${n}`);
      expectClose(og, oc, BF16_TOL, `add_rmsnorm n=${n}`);
    }
  });

  // A draft step's input: rows gathered from a table (the embedding lookup) and normed into one
  // half of wider rows; the columns outside it keep their poison. n = 72 is off the 16-byte grid
  // at column 72 (the scalar path), 2560 at column 2560 on it (the vector path).
  it.each([1, 7, 111])("rmsnorm of gathered rows into a column range, %i rows", (rows) => {
    const r = rng(900 + rows);
    for (const n of [72, 2560]) {
      const V = 301, ids = Int32Array.from({ length: rows }, () => Math.floor(r() * V));
      const [tc, tg] = pair(randn(V * n, r, 2), [V, n]);
      const [wc, wg] = pair(uniform(n, r, 0.5, 1.5), [n], "bf16");
      const run = (ops: NativeOps, dev: "cpu" | "cuda", dt: "f32" | "bf16", t: NativeTensor, w: NativeTensor) => {
        const out = poisoned(dt, [rows, 2 * n], dev);
        ops.rmsnorm(t, w, 1e-6, out, { rows: tensor(ids, "i32", [rows], dev), col: n });
        return values(out);
      };
      const want = run(cpu(), "cpu", "f32", tc, wc), got = run(gpu(), "cuda", "bf16", tg, wg);
      const half = (v: Float32Array, left: boolean) => v.filter((_, i) => (i % (2 * n) < n) === left);
      expect(half(got, true).every(Number.isNaN), `n=${n}: the other half untouched`).toBe(true);
      const err = relError(half(got, false), half(want, false));
      expect(err, `n=${n} relative error ${err}`).toBeLessThan(BF16_TOL);
    }
  });

  it("ops captured as a graph run only when it is replayed (the kernel bench times them so)", () => {
    const r = rng(77), ops = gpu();
    const [, gg] = pair(randn(3 * 2 * 96, r, 3), [3, 2 * 96]);
    const eager = poisoned("bf16", [3, 96], "cuda"), replayed = poisoned("bf16", [3, 96], "cuda");
    ops.siluMul(gg, eager);
    const graph = ops.capture(() => ops.siluMul(gg, replayed));
    expect(values(replayed).every(Number.isNaN), "not run by the capture").toBe(true);
    ops.replay(graph);
    expect(values(replayed)).toEqual(values(eager));
  });

  // The residual also kept as draft features: rows scattered, two of three column blocks written
  // (at n = 64 off the 16-byte grid, so the scalar path runs), the rest left as it was.
  it.each([1, 7, 111, 989])("add_rmsnorm capturing the residual, %i rows", (rows) => {
    const r = rng(500 + rows);
    for (const n of [64, 2560]) {
      const shift = n === 64 ? 4 : 0, width = 3 * n + shift, dstRows = rows + 5, cols = [shift, 2 * n + shift];
      const order = Array.from({ length: dstRows }, (_, i) => i).sort(() => r() - 0.5).slice(0, rows);
      const run = (ops: NativeOps, dev: "cpu" | "cuda", dt: "f32" | "bf16", res: NativeTensor, x: NativeTensor, w: NativeTensor) => {
        const dst = poisoned(dt, [dstRows, width], dev), out = poisoned(dt, [rows, n], dev);
        ops.addRmsnorm(res, x, w, 1e-6, out, { dst, rows: tensor(Int32Array.from(order), "i32", [rows], dev), cols });
        return { res: values(res), out, dst: values(dst) };
      };
      const [xc, xg] = pair(randn(rows * n, r, 2), [rows, n]);
      const [wc, wg] = pair(uniform(n, r, 0.5, 1.5), [n], "bf16");
      const [rc, rg] = pair(randn(rows * n, r), [rows, n]);
      const want = run(cpu(), "cpu", "f32", rc, xc, wc), got = run(gpu(), "cuda", "bf16", rg, xg, wg);
      expectClose(got.out, want.out, BF16_TOL, `add_rmsnorm with capture n=${n}`);
      // Captured elements equal the residual each backend computed; nothing else was written.
      const wrong = { gpu: 0, cpu: 0 };
      for (const [i, row] of order.entries())
        for (const k of cols)
          for (let c = 0; c < n; c++) {
            wrong.gpu += Number(got.dst[row * width + k + c] !== got.res[i * n + c]);
            wrong.cpu += Number(want.dst[row * width + k + c] !== want.res[i * n + c]);
          }
      expect(wrong, `n=${n}`).toEqual({ gpu: 0, cpu: 0 });
      const untouched = dstRows * width - rows * cols.length * n;
      expect(got.dst.filter(Number.isNaN).length, "elements left unwritten").toBe(untouched);
      expect(want.dst.filter(Number.isNaN).length).toBe(untouched);
    }
  });

  // Above 64 rows, products share the cuBLASLt algorithm of their power-of-two row bucket. The
  // tensor-core skinny path takes up to 32 rows of K a multiple of 64 (n = 1000: a partial block;
  // 2560 × 2560 and 1000 × 9728: K split over 4 and 8 blocks, summed by the last; K = 192: fewer
  // 64-wide chunks than warps).
  it.each([1, 3, 7, 8, 9, 17, 32, 64, 111, 127, 200, 989])("linear, %i rows, every product path, bias and f32 logits", (m) => {
    const r = rng(100 + m);
    // Large row counts on small products only: the CPU reference stays quick.
    for (const [n, k] of m > 111 ? [[96, 64], [1000, 256]] : [[96, 64], [40, 192], [2560, 2560], [1000, 9728]]) {
      const [xc, xg] = pair(randn(m * k, r), [m, k]);
      const [wc, wg] = pair(randn(n * k, r, 0.05), [n, k], "bf16");
      const [bc, bg] = pair(randn(n, r, 0.1), [n], "bf16");
      const want = poisoned("f32", [m, n], "cpu");
      cpu().linear(xc, wc, bc, want);
      for (const path of ["gemv", "skinny", "cublaslt"] as const) {
        if ((path === "gemv" && m > 8) || (path === "skinny" && (m > 32 || k % 64))) continue;
        const ops = gpu();
        ops.setGemmPath(path);
        const got = poisoned("bf16", [m, n], "cuda");
        ops.linear(xg, wg, bg, got);
        expectClose(got, want, BF16_TOL, `${path} ${m}x${n}x${k}`);
        const logits = poisoned("f32", [m, n], "cuda");
        ops.linear(xg, wg, null, logits);
        const ref = poisoned("f32", [m, n], "cpu");
        cpu().linear(xc, wc, null, ref);
        expectClose(logits, ref, 2e-3, `${path} f32 ${m}x${n}x${k}`);
      }
    }
  });

  // The MLP's down product over its activation: fused into the skinny kernel for one row (K split
  // over blocks at 2560 × 9728), the activation kernel first for more rows or off the skinny path.
  // Either way the very bits of silu_mul then linear on the same path, near the CPU's.
  it.each([1, 7, 17])("swiglu_linear, %i rows: silu_mul then linear, bit for bit", (m) => {
    const r = rng(300 + m);
    for (const [n, k] of [[40, 192], [1000, 256], [2560, 9728]]) {
      const [gc, gg] = pair(randn(m * 2 * k, r, 2), [m, 2 * k]);
      const [wc, wg] = pair(randn(n * k, r, 0.05), [n, k], "bf16");
      const want = poisoned("f32", [m, n], "cpu");
      cpu().swigluLinear(gc, wc, poisoned("f32", [m, k], "cpu"), want);
      for (const path of ["auto", "skinny", "cublaslt"] as const) {
        const ops = gpu();
        ops.setGemmPath(path);
        const act = poisoned("bf16", [m, k], "cuda"), fused = poisoned("bf16", [m, n], "cuda"), apart = poisoned("bf16", [m, n], "cuda");
        ops.swigluLinear(gg, wg, act, fused);
        ops.siluMul(gg, act);
        ops.linear(act, wg, null, apart);
        expect(relError(values(fused), values(apart)), `${path} ${m}x${n}x${k}`).toBe(0);
        expectClose(fused, want, BF16_TOL, `${path} ${m}x${n}x${k} against the CPU`);
      }
    }
  });

  it.each([
    { heads: 32, kv: 8, d: 128, norm: true, rot: 128, tokens: 7 },
    { heads: 28, kv: 4, d: 128, norm: false, rot: 128, tokens: 111 },
    { heads: 4, kv: 2, d: 24, norm: true, rot: 24, tokens: 1 },
    { heads: 16, kv: 2, d: 256, norm: true, rot: 64, tokens: 9 },
    { heads: 8, kv: 2, d: 128, norm: false, rot: 128, tokens: 13, scaled: true },
  ])("qkv_rope_store $heads/$kv heads of $d, norm $norm, rotary $rot, $tokens tokens, scaled table $scaled", (c) => {
    const r = rng(c.d * 7 + c.tokens);
    const h = hostLayout([{ qLen: c.tokens, kvLen: c.tokens + 300 }], 16, 64, r);
    const width = (c.heads + 2 * c.kv) * c.d;
    const [qkvc, qkvg] = pair(randn(c.tokens * width, r), [c.tokens, width]);
    const norms = c.norm ? [pair(uniform(c.d, r, 0.5, 1.5), [c.d], "bf16"), pair(uniform(c.d, r, 0.5, 1.5), [c.d], "bf16")] : undefined;
    const positions = Int32Array.from({ length: c.tokens }, () => Math.floor(r() * 40000));
    const slots = 64 * 16;
    const run = (ops: NativeOps, dev: "cpu" | "cuda", qkv: NativeTensor, i: 0 | 1) => {
      const dt = dev === "cpu" ? "f32" : "bf16";
      const q = poisoned(dt, [c.tokens, c.heads, c.d], dev);
      const kc = poisoned(dt, [slots, c.kv, c.d], dev), vc = poisoned(dt, [slots, c.kv, c.d], dev);
      // A yarn-like RoPE: its own inverse frequencies (here theta's, slowed 4× past half the dims) and cos/sin scaled.
      const table = c.scaled ? tensor(Float32Array.from({ length: c.rot / 2 }, (_, j) => 1e6 ** (-2 * j / c.rot) / (j > c.rot / 4 ? 4 : 1)), "f32", [c.rot / 2], dev) : null;
      ops.qkvRopeStore(qkv, norms?.[0][i] ?? null, norms?.[1][i] ?? null, 1e-6, tensor(positions, "i32", [c.tokens], dev),
        c.rot, 1e6, deviceLayout(h, dev), q, kc, vc, table, c.scaled ? 1.1386 : 1);
      return { q, k: rowsAt(kc, h.slots, c.kv * c.d), v: rowsAt(vc, h.slots, c.kv * c.d) };
    };
    const want = run(cpu(), "cpu", qkvc, 0), got = run(gpu(), "cuda", qkvg, 1);
    expectClose(got.q, want.q, BF16_TOL, "q");
    expect(relError(got.k, want.k)).toBeLessThan(BF16_TOL);
    expect(relError(got.v, want.v)).toBeLessThan(BF16_TOL);
  });

  const attentionCases: Array<{ name: string; d: number; heads: number; kv: number; base?: boolean; seqs: (r: () => number) => SeqSpec[] }> = [
    { name: "prefill 7", d: 128, heads: 32, kv: 8, seqs: () => [{ qLen: 7, kvLen: 7 }] },
    { name: "prefill 111 after 40 cached", d: 128, heads: 28, kv: 4, seqs: () => [{ qLen: 111, kvLen: 151 }] },
    { name: "prefill 989", d: 128, heads: 32, kv: 8, seqs: () => [{ qLen: 989, kvLen: 989 }] },
    { name: "decode batch, contexts 1..3001", d: 128, heads: 32, kv: 8,
      seqs: () => [1, 15, 16, 17, 333, 1024, 3001].map((n) => ({ qLen: 1, kvLen: n })) },
    { name: "mixed prefill chunk and decodes, head 64", d: 64, heads: 8, kv: 1,
      seqs: () => [{ qLen: 1, kvLen: 77 }, { qLen: 40, kvLen: 200 }, { qLen: 1, kvLen: 5 }] },
    { name: "tree masks 16 and 64 nodes", d: 128, heads: 32, kv: 8,
      seqs: (r) => [{ qLen: 16, kvLen: 516, treeMask: randomTreeMask(16, r) }, { qLen: 64, kvLen: 1064, treeMask: randomTreeMask(64, r) }] },
    // Query rows (nodes × group) filling part of a 64-row tile, and part of the second.
    { name: "trees of 7 and 30 nodes, partial tiles", d: 128, heads: 32, kv: 8,
      seqs: (r) => [{ qLen: 7, kvLen: 307, treeMask: randomTreeMask(7, r) }, { qLen: 30, kvLen: 1030, treeMask: randomTreeMask(30, r) }] },
    { name: "draft tree step: mask base before the new tokens", d: 128, heads: 32, kv: 8, base: true,
      seqs: (r) => [{ qLen: 4, kvLen: 300 + 12, treeMask: draftLevelMask(3, 4, r) }, { qLen: 4, kvLen: 77 + 12, treeMask: draftLevelMask(3, 4, r) }] },
    // Up to 16 query rows per sequence (tokens × group) take the decode kernel.
    { name: "small trees and decodes, group 8 (decode path)", d: 128, heads: 32, kv: 4,
      seqs: (r) => [{ qLen: 2, kvLen: 130, treeMask: randomTreeMask(2, r) }, { qLen: 1, kvLen: 64 }, { qLen: 2, kvLen: 2000, treeMask: randomTreeMask(2, r) }] },
    { name: "decode, head 64, group 8 (decode path)", d: 64, heads: 16, kv: 2, seqs: () => [7, 64, 65, 900].map((n) => ({ qLen: 1, kvLen: n })) },
    { name: "odd head size 24 (simple path)", d: 24, heads: 4, kv: 2,
      seqs: (r) => [{ qLen: 9, kvLen: 50 }, { qLen: 5, kvLen: 5, treeMask: randomTreeMask(5, r) }] },
  ];

  it.each(attentionCases)("attention: $name", (c) => {
    const r = rng(c.d + c.heads * 3 + c.name.length);
    const seqs = c.seqs(r);
    const pageSize = 16, numPages = seqs.reduce((n, s) => n + Math.ceil(s.kvLen / pageSize), 0) + 3;
    const h = hostLayout(seqs, pageSize, numPages, r);
    const T = h.numTokens, slots = numPages * pageSize;
    const [qc, qg] = pair(randn(T * c.heads * c.d, r), [T, c.heads, c.d]);
    const [kc, kg] = pair(randn(slots * c.kv * c.d, r), [slots, c.kv, c.d]);
    const [vc, vg] = pair(randn(slots * c.kv * c.d, r), [slots, c.kv, c.d]);
    const scale = 1 / Math.sqrt(c.d);
    const want = poisoned("f32", [T, c.heads, c.d], "cpu");
    // Draft tree steps: mask bits start at the first node of level 1, i.e. 8 positions before the new level.
    const base = c.base ? Int32Array.from(seqs, (s) => s.kvLen - 12) : undefined;
    const layout = (dev: "cpu" | "cuda") => ({ ...deviceLayout(h, dev), treeBase: base && tensor(base, "i32", [base.length], dev) });
    cpu().attention(qc, kc, vc, layout("cpu"), scale, want);
    // The context split over as many blocks as fill the GPU, and (as timings cap it) over one or three;
    // automatic again last: the decode kernel's last split merges, and must leave its counters zeroed.
    const ops = gpu();
    for (const max of [0, 1, 3, 0]) {
      ops.setAttentionSplits(max);
      const got = poisoned("bf16", [T, c.heads, c.d], "cuda");
      ops.attention(qg, kg, vg, layout("cuda"), scale, got);
      expectClose(got, want, BF16_TOL, `${c.name}, splits ${max || "automatic"}`);
    }
  });

  // Decode shapes (a sequence's rows fit one 16-row tile) rotate and cache the new tokens inside the
  // attention kernel; the others run the two ops. Either way: qkv_rope_store then attention, bit for
  // bit, caches included. The head-64 cases take a scaled RoPE's table.
  it.each(attentionCases.filter((c) => c.d === 64 || c.d === 128))("rope_attention: $name, the bits of qkv_rope_store then attention", (c) => {
    const r = rng(c.d * 5 + c.heads + c.name.length);
    const seqs = c.seqs(r);
    const pageSize = 16, numPages = seqs.reduce((n, s) => n + Math.ceil(s.kvLen / pageSize), 0) + 3;
    const h = hostLayout(seqs, pageSize, numPages, r);
    const T = h.numTokens, slots = numPages * pageSize, width = (c.heads + 2 * c.kv) * c.d;
    const bf16 = (data: Float32Array, shape: number[]) => tensor(roundBf16(data), "bf16", shape, "cuda");
    const qkv = bf16(randn(T * width, r), [T, width]);
    const qNorm = bf16(uniform(c.d, r, 0.5, 1.5), [c.d]), kNorm = bf16(uniform(c.d, r, 0.5, 1.5), [c.d]);
    const positions = tensor(Int32Array.from({ length: T }, () => Math.floor(r() * 40000)), "i32", [T], "cuda");
    const kData = randn(slots * c.kv * c.d, r), vData = randn(slots * c.kv * c.d, r);
    const base = c.base ? Int32Array.from(seqs, (s) => s.kvLen - 12) : undefined;
    const layout = { ...deviceLayout(h, "cuda"), treeBase: base && tensor(base, "i32", [base.length], "cuda") };
    const scaled = c.d === 64;
    const table = scaled ? tensor(Float32Array.from({ length: c.d / 2 }, (_, j) => 1e6 ** (-2 * j / c.d) / (j > c.d / 4 ? 4 : 1)), "f32", [c.d / 2], "cuda") : null;
    const ropeScale = scaled ? 1.1386 : 1, scale = 1 / Math.sqrt(c.d);
    const ops = gpu();
    for (const max of [0, 3]) {
      ops.setAttentionSplits(max);
      const run = (fused: boolean) => {
        const kc = bf16(kData, [slots, c.kv, c.d]), vc = bf16(vData, [slots, c.kv, c.d]);
        const q = poisoned("bf16", [T, c.heads, c.d], "cuda"), out = poisoned("bf16", [T, c.heads, c.d], "cuda");
        if (fused) {
          ops.ropeAttention(qkv, qNorm, kNorm, 1e-6, positions, c.d, 1e6, layout, q, kc, vc, scale, out, table, ropeScale);
        } else {
          ops.qkvRopeStore(qkv, qNorm, kNorm, 1e-6, positions, c.d, 1e6, layout, q, kc, vc, table, ropeScale);
          ops.attention(q, kc, vc, layout, scale, out);
        }
        return [out, kc, vc].map((t) => Buffer.from(t.toBytes()));
      };
      const want = run(false), got = run(true);
      ["out", "k cache", "v cache"].forEach((what, i) => expect(got[i].equals(want[i]), `${c.name}, splits ${max}: ${what}`).toBe(true));
    }
  });

  // Random weights of the real shapes are the same on every backend; past 65536 × 256 elements the
  // kernel's blocks stride. A product right after a fill reads its first weights before waiting for
  // the kernel ahead (programmatic launch): the fill must have finished writing them by then.
  it.each([1, 7, 111, (1 << 24) + 7])("fill_normal, %i elements, and a product right after it", (n) => {
    const seed = n * 3 + 1;
    const want = poisoned("bf16", [n], "cpu"), got = poisoned("bf16", [n], "cuda");
    cpu().fillNormal(want, seed, 0.5, 2);
    gpu().fillNormal(got, seed, 0.5, 2);
    expect(relError(values(got), values(want)), "fill_normal").toBeLessThan(1e-3);

    const r = rng(n), k = 2560, rows = 1000;
    const [xc, xg] = pair(randn(k, r), [1, k]);
    for (const path of ["gemv", "skinny", "cublaslt"] as const) {
      const ops = gpu(), wg = poisoned("bf16", [rows, k], "cuda"), wc = poisoned("bf16", [rows, k], "cpu");
      ops.setGemmPath(path);
      ops.fillNormal(wg, seed, 0, 0.05);
      const out = poisoned("f32", [1, rows], "cuda");
      ops.linear(xg, wg, null, out);
      cpu().fillNormal(wc, seed, 0, 0.05);
      const ref = poisoned("f32", [1, rows], "cpu");
      cpu().linear(xc, wc, null, ref);
      expectClose(out, ref, 2e-3, `${path} after fill_normal`);
    }
  });

  it.each([1, 7, 111])("embedding, silu_mul, gather_rows, copy_columns: %i rows", (rows) => {
    const r = rng(rows * 13);
    const V = 1000, H = 96, I = 200;
    const [tc, tg] = pair(randn(V * H, r), [V, H], "bf16");
    const ids = Int32Array.from({ length: rows }, () => Math.floor(r() * V));
    const ec = poisoned("f32", [rows, H], "cpu"), eg = poisoned("bf16", [rows, H], "cuda");
    cpu().embedding(tensor(ids, "i32", [rows], "cpu"), tc, ec);
    gpu().embedding(tensor(ids, "i32", [rows], "cuda"), tg, eg);
    expect(relError(values(eg), values(ec))).toBe(0);

    const [gc, gg] = pair(randn(rows * 2 * I, r, 3), [rows, 2 * I]);
    const sc = poisoned("f32", [rows, I], "cpu"), sg = poisoned("bf16", [rows, I], "cuda");
    cpu().siluMul(gc, sc);
    gpu().siluMul(gg, sg);
    expectClose(sg, sc, BF16_TOL, "silu_mul");

    const pick = Int32Array.from({ length: 5 }, () => Math.floor(r() * rows));
    const rc = poisoned("f32", [5, 2 * I], "cpu"), rg = poisoned("bf16", [5, 2 * I], "cuda");
    cpu().gatherRows(gc, tensor(pick, "i32", [5], "cpu"), rc);
    gpu().gatherRows(gg, tensor(pick, "i32", [5], "cuda"), rg);
    expect(relError(values(rg), values(rc))).toBe(0);

    const cc = poisoned("f32", [rows, 3 * H], "cpu"), cg = poisoned("bf16", [rows, 3 * H], "cuda");
    for (let j = 0; j < 3; j++) {
      cpu().copyColumns(ec, cc, j * H);
      gpu().copyColumns(eg, cg, j * H);
    }
    expect(relError(values(cg), values(cc))).toBe(0);
  });

  it.each([[1, 32000, 4], [7, 32000, 10], [3, 151936, 8], [2, 1000, 64], [5, 1001, 16], [3, 20, 8], [300, 4097, 8]])("topk_softmax: %i rows of %i, k %i, mapped ids", (rows, V, k) => {
    const r = rng(V + k);
    const logits = randn(rows * V, r, 4);
    const map = Int32Array.from({ length: V }, (_, i) => i * 3 + 7);
    const run = (ops: NativeOps, dev: "cpu" | "cuda") => {
      const probs = poisoned("f32", [rows, k], dev), ids = poisoned("i32", [rows, k], dev);
      ops.topkSoftmax(tensor(logits, "f32", [rows, V], dev), k, tensor(map, "i32", [V], dev), probs, ids);
      return { probs: values(probs), ids: values(ids) };
    };
    // Twice on one CUDA ops: rows split over blocks leave their arrival counters as they found them.
    const want = run(cpu(), "cpu"), ops = gpu();
    for (const got of [run(ops, "cuda"), run(ops, "cuda")]) {
      expect(Array.from(got.ids)).toEqual(Array.from(want.ids));
      expect(relError(got.probs, want.probs)).toBeLessThan(1e-4);
    }
  });

  it("scatter_rows undoes gather_rows", () => {
    const r = rng(5);
    const [xc, xg] = pair(randn(50 * 24, r), [50, 24]);
    const perm = Int32Array.from({ length: 50 }, (_, i) => (i * 17) % 50);
    const ids = [tensor(perm, "i32", [50], "cpu"), tensor(perm, "i32", [50], "cuda")] as const;
    const mid = [poisoned("f32", [50, 24], "cpu"), poisoned("bf16", [50, 24], "cuda")];
    const back = [poisoned("f32", [50, 24], "cpu"), poisoned("bf16", [50, 24], "cuda")];
    cpu().gatherRows(xc, ids[0], mid[0]);
    cpu().scatterRows(mid[0], ids[0], back[0]);
    gpu().gatherRows(xg, ids[1], mid[1]);
    gpu().scatterRows(mid[1], ids[1], back[1]);
    expect(relError(values(back[0]), values(xc))).toBe(0);
    expect(relError(values(back[1]), values(xg))).toBe(0);
  });

  it.each([[1, 151936], [5, 4097], [3, 1]])("argmax: %i rows of %i, ties to the lowest index", (rows, V) => {
    const r = rng(rows * V);
    const logits = randn(rows * V, r, 3);
    for (let i = 0; i < rows; i++) {
      const at = Math.floor(r() * V), tie = Math.floor(r() * V);
      logits[i * V + at] = 50;
      logits[i * V + tie] = 50;  // an exact tie, possibly in another block
    }
    const want = poisoned("i32", [rows], "cpu"), got = poisoned("i32", [rows], "cuda");
    cpu().argmax(tensor(logits, "f32", [rows, V], "cpu"), want);
    gpu().argmax(tensor(logits, "f32", [rows, V], "cuda"), got);
    expect(Array.from(values(got))).toEqual(Array.from(values(want)));
  });

  it.each([1000, 151936])("sampling over %i logits: greedy exact, draws equal to the reference", (V) => {
    const r = rng(V);
    const rows = 24;
    const logits = randn(rows * V, r, 3);
    const params = new Uint8Array(rows * 32);
    const dv = new DataView(params.buffer);
    // Kinds: greedy; temperature; top-k; top-p; both; a top-k past the kernel's compaction; ties at
    // the k-th logit; more tied maxima than the compaction holds.
    const kinds = [[0, 0, 1], [0.7, 0, 1], [1.0, 20, 1], [1.3, 0, 0.9], [0.7, 20, 0.9], [1.0, 3000, 0.95], [1.3, 50, 1], [1.0, 20, 1]];
    for (let i = 0; i < rows; i++) {
      const kind = i % kinds.length, [t, k, p] = kinds[kind], row = logits.subarray(i * V, (i + 1) * V);
      if (kind === 6) row.forEach((x, j) => (row[j] = Math.round(x * 2) / 2));
      if (kind === 7) for (let j = 0; j < Math.min(V, 3000); j++) row[(j * 37) % V] = 20;
      dv.setFloat32(i * 32, t, true);
      dv.setInt32(i * 32 + 4, k, true);
      dv.setFloat32(i * 32 + 8, p, true);
      dv.setBigUint64(i * 32 + 16, BigInt(1000 + i), true);
      dv.setBigUint64(i * 32 + 24, BigInt(i * 7), true);
    }
    const want = poisoned("i32", [rows], "cpu"), got = poisoned("i32", [rows], "cuda");
    cpu().sample(tensor(logits, "f32", [rows, V], "cpu"), tensor(params, "u8", [rows * 32], "cpu"), want);
    gpu().sample(tensor(logits, "f32", [rows, V], "cuda"), tensor(params, "u8", [rows * 32], "cuda"), got);
    const w = values(want), g = values(got);
    for (let i = 0; i < rows; i += kinds.length) expect(g[i], `greedy row ${i}`).toBe(w[i]);
    const same = w.filter((x, i) => x === g[i]).length;
    expect(same, `${same}/${rows} draws equal`).toBeGreaterThanOrEqual(rows - 1);
    for (const x of g) expect(x >= 0 && x < V).toBe(true);
  });
});

/**
 * Masks of level `levels` of a draft tree with k nodes per level, relative to the first node of
 * level 1: each node sees one random node of every earlier level (its ancestors) and itself.
 */
function draftLevelMask(levels: number, k: number, r: () => number): bigint[] {
  return Array.from({ length: k }, (_, j) => {
    let m = 1n << BigInt((levels - 1) * k + j);
    for (let l = 0; l < levels - 1; l++) m |= 1n << BigInt(l * k + Math.floor(r() * k));
    return m;
  });
}

/** The rows at `slots` of a [slots, width] cache tensor, as floats. */
function rowsAt(cache: NativeTensor, slots: Int32Array, width: number): Float32Array {
  const all = values(cache);
  const out = new Float32Array(slots.length * width);
  slots.forEach((s, i) => out.set(all.subarray(s * width, (s + 1) * width), i * width));
  return out;
}
