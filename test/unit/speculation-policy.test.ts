/** The speculation policy on synthetic measurements: it settles on the fastest choice and keeps probing the others. */
import { describe, expect, it } from "vitest";
import { type Choice, SpeculationPolicy } from "../../lib/spec/speculation-policy.js";
import { TreePolicy } from "../../lib/spec/tree-policy.js";

const name = (c: Choice) => (c.kind === "plain" ? "plain" : `${c.shape.steps}/${c.shape.topk}/${c.shape.draftTokens}`);

/**
 * Runs n iterations where each choice commits tokens at the given rate (tokens per sequence per
 * ms; `batch` may change per iteration); returns how often each ran.
 */
function simulate(policy: SpeculationPolicy, batch: number | ((i: number) => number), rate: (c: Choice) => number, n: number): Map<string, number> {
  const runs = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const size = typeof batch === "number" ? batch : batch(i);
    const c = policy.choose(size, false);
    runs.set(name(c), (runs.get(name(c)) ?? 0) + 1);
    policy.record(size, false, c, 10 * size * rate(c), 10);
  }
  return runs;
}

describe("speculation policy", () => {
  it("stops speculating where plain decoding measures faster, and probes rarely", () => {
    const policy = new SpeculationPolicy(new TreePolicy());
    const runs = simulate(policy, 32, (c) => (c.kind === "plain" ? 3 : 2), 2000);
    expect(runs.get("plain")!).toBeGreaterThan(1900);
    const best = policy.snapshot().find((s) => s.best)!;
    expect(best.choice).toBe("plain");
    // The window its median is of, for diagnostics: the last nine rates measured.
    expect(best.recent).toEqual(Array(9).fill(3));
    expect(best.tokensPerSeqMs).toBe(3);
  });

  it("picks the tree that commits the most tokens per ms", () => {
    const policy = new SpeculationPolicy(new TreePolicy());
    const candidates = new TreePolicy().candidates(1).map((s) => `${s.steps}/${s.topk}/${s.draftTokens}`);
    expect(candidates.length).toBeGreaterThanOrEqual(2);
    const runs = simulate(policy, 1, (c) => (c.kind === "plain" ? 1 : name(c) === candidates[1] ? 2.5 : 1.8), 1000);
    expect(runs.get(candidates[1])!).toBeGreaterThan(900);
    for (const c of ["plain", ...candidates]) expect(runs.get(c), c).toBeGreaterThanOrEqual(2);
  });

  it("follows a change: when speculation starts paying, it switches back", () => {
    const policy = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
    simulate(policy, 4, (c) => (c.kind === "plain" ? 2 : 1.7), 300);
    const runs = simulate(policy, 4, (c) => (c.kind === "plain" ? 2 : 4), 1000);
    expect(runs.get("3/1/4")!).toBeGreaterThan(850);  // found within one probe interval
  });

  it("questions a clear leader far less often, and still follows a change", () => {
    const policy = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
    simulate(policy, 32, (c) => (c.kind === "plain" ? 2 : 1.2), 1000);
    const settled = simulate(policy, 32, (c) => (c.kind === "plain" ? 2 : 1.2), 3000);
    expect(settled.get("3/1/4") ?? 0).toBeLessThanOrEqual(3);
    const close = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
    simulate(close, 32, (c) => (c.kind === "plain" ? 2 : 1.8), 1000);
    expect(simulate(close, 32, (c) => (c.kind === "plain" ? 2 : 1.8), 3000).get("3/1/4")).toBeGreaterThanOrEqual(20);
    const changed = simulate(policy, 32, (c) => (c.kind === "plain" ? 2 : 4), 3000);
    expect(changed.get("3/1/4")!).toBeGreaterThan(1900);
  });

  it("questions a clear leader rarely from its first probe on (a short run pays for few probes)", () => {
    const policy = new SpeculationPolicy(new TreePolicy());
    const runs = simulate(policy, 16, (c) => (c.kind === "plain" ? 3 : 1.2), 400);
    // Each tree: its two measurements, then at most one probe in the 400 iterations.
    for (const [choice, n] of runs) if (choice !== "plain") expect(n, choice).toBeLessThanOrEqual(3);
  });

  it("speculates only where a tree measures clearly faster than plain decoding", () => {
    const near = simulate(new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 })), 8, (c) => (c.kind === "plain" ? 3 : 3.09), 500);
    expect(near.get("plain")!).toBeGreaterThan(450);
    const clear = simulate(new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 })), 8, (c) => (c.kind === "plain" ? 3 : 3.3), 500);
    expect(clear.get("3/1/4")!).toBeGreaterThan(450);
  });

  it("starts a new batch size from the nearest measured one instead of exploring again", () => {
    const policy = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
    simulate(policy, 4, (c) => (c.kind === "plain" ? 2 : 4), 100);
    const first = simulate(policy, 2, (c) => (c.kind === "plain" ? 2 : 4), 10);
    expect([...first.keys()]).toEqual(["3/1/4"]);
    // Sampled batches are measured on their own.
    const sampled = new Map<string, number>();
    for (let i = 0; i < 4; i++) {
      const c = policy.choose(2, true);
      sampled.set(c.kind, (sampled.get(c.kind) ?? 0) + 1);
      policy.record(2, true, c, 10, 10);
    }
    expect(sampled.get("plain")).toBeGreaterThan(0);
  });

  it("does not explore the trees of each bucket a draining batch crosses where plain decoding leads clearly", () => {
    const policy = new SpeculationPolicy(new TreePolicy());
    simulate(policy, 32, (c) => (c.kind === "plain" ? 2 : 1), 500);
    const drained = simulate(policy, (i) => Math.max(1, 32 - Math.floor(i / 10)), (c) => (c.kind === "plain" ? 2 : 1), 320);
    const trees = [...drained].filter(([k]) => k !== "plain").reduce((n, [, v]) => n + v, 0);
    expect(trees, JSON.stringify([...drained])).toBeLessThanOrEqual(3);
  });

  it("compares choices per sequence, so a batch draining within its bucket does not favour what ran while it was full", () => {
    // Batch 32 while plain steps run, 17 when the tree is probed: raw tokens/ms would favour plain.
    const policy = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
    let last: Choice = { kind: "plain" };
    const runs = new Map<string, number>();
    for (let i = 0; i < 600; i++) {
      const size = last.kind === "plain" ? 32 : 17;
      const c = policy.choose(size, false);
      runs.set(name(c), (runs.get(name(c)) ?? 0) + 1);
      policy.record(size, false, c, 10 * size * (c.kind === "plain" ? 1 : 1.5), 10);
      last = c;
    }
    expect(runs.get("3/1/4")!).toBeGreaterThan(500);
  });

  it("is not thrown by a rare slow iteration (a graph capture)", () => {
    const policy = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
    let i = 0;
    const runs = simulate(policy, 2, (c) => (c.kind === "plain" ? 2 : ++i % 40 === 0 ? 0.05 : 3), 1000);
    expect(runs.get("3/1/4")!).toBeGreaterThan(950);
  });

  it("drops a rarely probed choice's rates measured long ago (at other context lengths)", () => {
    const policy = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
    let rounds = 0;
    // The tree leads for its first 30 rounds, then loses to plain decoding and is only probed.
    const runs = simulate(policy, 8, (c) => (c.kind === "plain" ? 2 : rounds++ < 30 ? 3 : 1), 3000);
    expect(runs.get("plain")!).toBeGreaterThan(2900);
    const tree = policy.snapshot().find((s) => s.choice === "tree 3/1/4")!;
    expect(tree.best).toBe(false);
    expect(tree.recent.length).toBeGreaterThan(0);
    expect(tree.recent, "its window holds only what its recent probes measured").toEqual(tree.recent.map(() => 1));
  });

  // Iterations of 1 ms per round and 0.45 ms per plain step; while a tree leads a request joins
  // every `treeJoinEvery` rounds (a prefill of 0.95 ms), while plain steps lead every 90 steps (a
  // mixed step of 1.1 ms); each join commits one token a sequence. Returns how often each ran.
  function withJoins(policy: SpeculationPolicy, treeRate: number, treeJoinEvery: number, n: number, joins = true) {
    const runs = new Map<string, number>();
    let due = 0;
    for (let i = 0; i < n; i++) {
      const c = policy.choose(32, false);
      runs.set(name(c), (runs.get(name(c)) ?? 0) + 1);
      policy.record(32, false, c, c.kind === "plain" ? 32 * 2.2 * 0.45 : 32 * treeRate, c.kind === "plain" ? 0.45 : 1);
      const plainLeads = policy.snapshot().find((x) => x.best)!.choice === "plain";
      due += plainLeads ? 1 / 90 : 1 / treeJoinEvery;
      if (due < 1) continue;
      due -= 1;
      if (joins) policy.recordJoin(32, false, 32, plainLeads ? 1.1 : 0.95);
    }
    return runs;
  }

  it("charges iterations that admit requests to the choice that led meanwhile", () => {
    // As the trained pair at MT-Bench batch 32: plain steps lead at first (2.2 tokens a sequence a
    // ms against rounds' 2.0); then rounds measure 2.6 an iteration, but while they lead sequences
    // finish out of step and a request joins every 2.4 rounds in an iteration of its own.
    const run = (joins: boolean) => {
      const policy = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
      withJoins(policy, 2.0, 2.4, 600, joins);
      return { policy, runs: withJoins(policy, 2.6, 2.4, 3000, joins) };
    };
    expect(run(false).runs.get("3/1/4")!).toBeGreaterThan(2500);  // per iteration, rounds win
    const { policy, runs } = run(true);
    expect(runs.get("plain")!).toBeGreaterThan(2000);
    const tree = policy.snapshot().find((x) => x.choice === "tree 3/1/4")!;
    expect(tree.joinShare).toBeGreaterThan(0.05);
    expect(tree.effectiveRate).toBeLessThan(tree.tokensPerSeqMs);
  });

  it("does not hold joins against the leader that a choice never seen leading would pay as well", () => {
    // Short requests with a head that pays a little (2.45 against plain steps' 2.2 × 1.05): a
    // request's prefill every 5 rounds, which plain steps would need as well. Held against the
    // rounds alone, the joins would hand the lead to plain steps (2.23 against 2.31).
    const policy = new SpeculationPolicy(new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }));
    const runs = withJoins(policy, 2.45, 5, 3000);
    expect(runs.get("3/1/4")!).toBeGreaterThan(2800);
  });

  it("always speculates with the batch's default tree in mode always", () => {
    const policy = new SpeculationPolicy(new TreePolicy(), "always");
    const runs = simulate(policy, 1, (c) => (c.kind === "plain" ? 100 : 1), 50);
    expect([...runs.keys()]).toEqual(["6/8/32"]);
  });
});
