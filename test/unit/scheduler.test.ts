/**
 * The batch scheduler with speculative decoding, on a scripted executor (no model): which steps
 * it asks for once the speculation policy has measured plain steps faster than rounds.
 */
import { describe, expect, it, vi } from "vitest";
import { timesSince } from "../../lib/batch/iteration-times.js";
import { PLAIN_PROBE_STEPS, Scheduler, type StepExecutor } from "../../lib/batch/scheduler.js";
import { GREEDY, type Sequence } from "../../lib/batch/sequence.js";
import type { NativeRound, NativeRoundResult, NativeSpecPrefill, NativeStep, NativeStepResult } from "../../lib/native.js";
import { type Choice, SpeculationPolicy } from "../../lib/spec/speculation-policy.js";
import { TreePolicy } from "../../lib/spec/tree-policy.js";


/**
 * Every step samples token 5. Plain steps take one macrotask (so a consumer of the tokens runs
 * between steps); rounds take 3 ms and accept nothing, so plain steps measure faster; a catch-up
 * takes `catchUpMs`.
 */
class ScriptedExecutor implements StepExecutor {
  readonly log: string[] = [];
  roundTokens = 0;
  /** Rounds whose tree is larger than a batch of `maxRunning` sequences may verify. */
  readonly oversized: string[] = [];
  private device: Promise<unknown> = Promise.resolve();
  constructor(private readonly catchUpMs = 0, private readonly tree?: TreePolicy, private readonly maxRunning = 4) {}
  async step(s: NativeStep): Promise<NativeStepResult> {
    await new Promise((resolve) => setImmediate(resolve));
    this.log.push(`step ${s.tokens.length}`);
    return { tokens: new Int32Array(s.logitRows.length).fill(5), callMs: 1 };
  }
  async prefillSpeculative(p: NativeSpecPrefill): Promise<NativeStepResult> {
    if (p.storedFeatures && this.catchUpMs) await new Promise((resolve) => setTimeout(resolve, this.catchUpMs));
    this.log.push(`${p.storedFeatures ? "catch-up" : "prefill"} ${p.tokens.length}`);
    return { tokens: new Int32Array(p.logitRows.length).fill(5), callMs: p.storedFeatures ? this.catchUpMs : 1 };
  }
  async speculativeRound(r: NativeRound): Promise<NativeRoundResult> {
    // One after another, as on a device: a round launched ahead starts when the one before ends.
    const run = this.device.then(() => new Promise((resolve) => setTimeout(resolve, 3)));
    this.device = run;
    await run;
    this.log.push("round");
    const B = r.slots.length;
    if (this.tree && B * r.draftTokens > this.tree.verifyRows(this.maxRunning)) this.oversized.push(`${B} × ${r.draftTokens}`);
    this.roundTokens += B;
    return {
      tokens: new Int32Array(B).fill(5), counts: new Int32Array(B).fill(1), drafted: new Int32Array(B).fill(r.draftTokens - 1),
      trees: new Int32Array(B * r.draftTokens), draftMs: 0, verifyMs: 0, acceptMs: 0, deviceMs: 0, stageMs: 0, readMs: 0, callMs: 3,
    };
  }
}

/** A scheduler with the default policy and one chain tree over a scripted executor. */
function scripted(catchUpMs = 0) {
  const exec = new ScriptedExecutor(catchUpMs);
  const scheduler = new Scheduler(exec, {
    maxStepTokens: 64, numPages: 64, pageSize: 16, maxRunning: 4, maxQueued: 8,
    tree: new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }), speculation: "auto",
  });
  return { exec, scheduler };
}

/** Every token a request streams, once it is done. */
async function collect(seq: Sequence): Promise<number[]> {
  const out: number[] = [];
  for await (const e of seq.events) out.push(...e.tokens);
  return out;
}

async function until(seq: Sequence, generated: number): Promise<void> {
  for await (const _ of seq.events) if (seq.generated >= generated) return;
}

describe("speculative scheduling", () => {
  it("where plain steps measure faster, prompts are prefilled in plain steps, without the draft", async () => {
    const { exec, scheduler } = scripted();
    const first = scheduler.submit([1, 2, 3, 4], 300, GREEDY, new Set());
    await until(first, 200);
    const settled = exec.log.length;
    const second = scheduler.submit([6, 7, 8, 9, 10, 11], 20, GREEDY, new Set());
    await until(second, 20);
    await scheduler.idle();
    const later = exec.log.slice(settled);
    // The first prompt was prefilled with the draft (nothing was measured yet), the second was not.
    expect(exec.log[0]).toBe("prefill 4");
    expect(later.filter((l) => l.startsWith("prefill"))).toEqual([]);
    expect(later).toContain("step 7");  // the new prompt's 6 tokens and the first request's decode token
    const choices = scheduler.stats().speculative!.choices!;
    expect(choices.find((c) => c.best)!.choice).toBe("plain");
    // The step that admitted the second request counts against plain steps in the bucket of two.
    const two = choices.find((c) => c.bucket === "2g" && c.best)!;
    expect(two.choice).toBe("plain");
    expect(two.joinShare).toBeGreaterThan(0);
    // Trees tried after plain steps first catch the draft up from the kept features (draft only).
    expect(exec.log.filter((l) => l.startsWith("catch-up")).length).toBeGreaterThan(0);
    exec.log.forEach((l, i) => {
      if (l === "round") expect(exec.log[i - 1], `before entry ${i}`).toMatch(/^(round|catch-up|prefill)/);
    });
  });

  it("prompts that start together, with nothing decoding, are not charged to the leader", async () => {
    const { scheduler } = scripted();
    await until(scheduler.submit([1, 2, 3, 4], 200, GREEDY, new Set()), 200);
    await scheduler.idle();
    const pair = [scheduler.submit([5, 6, 7], 30, GREEDY, new Set()), scheduler.submit([8, 9], 30, GREEDY, new Set())];
    await Promise.all(pair.map((seq) => until(seq, 30)));
    await scheduler.idle();
    const two = scheduler.stats().speculative!.choices!.find((c) => c.bucket === "2g" && c.best)!;
    expect(two.choice).toBe("plain");
    expect(two.joinShare).toBe(0);
  });

  it("a tree tried after plain steps is measured with the draft's catch-up", async () => {
    const { exec, scheduler } = scripted(30);
    const record = vi.spyOn(SpeculationPolicy.prototype, "record");
    try {
      await until(scheduler.submit([1, 2, 3, 4], 300, GREEDY, new Set()), 300);
      await scheduler.idle();
      const catchUps = exec.log.filter((l) => l.startsWith("catch-up")).length;
      expect(catchUps).toBeGreaterThanOrEqual(2);
      // Rounds alone take 3 ms: each round a 30 ms catch-up preceded is measured with it.
      const slowRounds = record.mock.calls.filter(([, , choice, , ms]) => choice.kind === "tree" && ms >= 30).length;
      expect(slowRounds).toBe(catchUps);
    } finally {
      record.mockRestore();
    }
  });

  it("counts each kind of iteration with its wall time", async () => {
    const { exec, scheduler } = scripted();
    const seq = scheduler.submit([1, 2, 3, 4], 200, GREEDY, new Set());
    await until(seq, 100);
    const middle = scheduler.stats().iterations;
    const other = scheduler.submit([6, 7, 8, 9, 10, 11], 20, GREEDY, new Set());
    await until(other, 20);
    await scheduler.idle();
    const t = scheduler.stats().iterations;
    const logged = (prefix: string) => exec.log.filter((l) => l.startsWith(prefix)).length;
    expect(t.round!.count).toBe(logged("round"));
    expect(t.catchUp!.count).toBe(logged("catch-up"));
    expect(t.prefill!.count).toBe(logged("prefill"));
    expect(t.decode!.count + t.mixed!.count).toBe(logged("step"));
    expect(t.mixed!.count).toBeGreaterThan(0);  // the second prompt, prefilled in a plain step
    expect(t.round!.ms).toBeGreaterThanOrEqual(2.9 * t.round!.count);  // scripted rounds take 3 ms
    expect(t.round!.tokens).toBe(exec.roundTokens);
    // An interval counts only its own iterations.
    const since = timesSince(middle, t);
    expect(since.decode!.count).toBe(t.decode!.count - middle.decode!.count);
    expect(since.prefill).toBeUndefined();  // the one prefill with the draft came before `middle`
  });

  it("a tree the policy chose as a pipelined run ended is dropped when the batch has changed since", async () => {
    const tree = new TreePolicy();
    const exec = new ScriptedExecutor(0, tree);
    const scheduler = new Scheduler(exec, { maxStepTokens: 64, numPages: 64, pageSize: 16, maxRunning: 4, maxQueued: 8, tree, speculation: "auto" });
    const choose = SpeculationPolicy.prototype.choose;
    let armed = false;
    const others: Sequence[] = [];
    // Once plain steps lead at batch 1, the policy picks batch 1's widest tree while three more
    // requests arrive: the tree must not then run for the batch of four.
    const spy = vi.spyOn(SpeculationPolicy.prototype, "choose").mockImplementation(function (this: SpeculationPolicy, batch, sampled) {
      if (!armed || batch !== 1 || !this.prefersPlain(1, sampled)) return choose.call(this, batch, sampled);
      armed = false;
      for (let i = 0; i < 3; i++) others.push(scheduler.submit([7, 8, 9], 6, GREEDY, new Set()));
      return { kind: "tree", shape: tree.shapeFor(1) };
    });
    try {
      const first = scheduler.submit([1, 2, 3, 4], 120, GREEDY, new Set());
      await until(first, 40);
      armed = true;
      await until(first, 120);
      await scheduler.idle();
    } finally {
      spy.mockRestore();
    }
    expect(armed).toBe(false);
    expect(others.map((s) => s.generated)).toEqual([6, 6, 6]);
    expect(exec.oversized).toEqual([]);
  });

  it("while a tree leads, plain steps are probed as a pipelined run whose first step is not measured", async () => {
    // The policy scripted: a tree leads, and every eighth choice probes plain steps.
    const tree: Choice = { kind: "tree", shape: { steps: 3, topk: 1, draftTokens: 4 } }, plain: Choice = { kind: "plain" };
    let calls = 0;
    const choose = vi.spyOn(SpeculationPolicy.prototype, "choose").mockImplementation(() => (++calls % 8 === 0 ? plain : tree));
    const prefers = vi.spyOn(SpeculationPolicy.prototype, "prefersPlain").mockReturnValue(false);
    const record = vi.spyOn(SpeculationPolicy.prototype, "record");
    try {
      const { exec, scheduler } = scripted();
      await until(scheduler.submit([1, 2, 3, 4], 200, GREEDY, new Set()), 200);
      await scheduler.idle();
      const runs: number[] = [];
      exec.log.forEach((l, i) => {
        if (l !== "step 1") return;
        if (exec.log[i - 1] === "step 1") runs[runs.length - 1]++;
        else runs.push(1);
      });
      expect(runs.length, exec.log.join(", ")).toBeGreaterThanOrEqual(3);
      // PLAIN_PROBE_STEPS a probe (the last may be cut short by the request's length), all but the first measured.
      expect(runs.slice(0, -1).every((n) => n === PLAIN_PROBE_STEPS), runs.join(", ")).toBe(true);
      const plainRecords = record.mock.calls.filter(([, , choice]) => choice.kind === "plain").length;
      expect(plainRecords).toBe(runs.reduce((n, r) => n + r - 1, 0));
    } finally {
      choose.mockRestore();
      prefers.mockRestore();
      record.mockRestore();
    }
  });

  it("a decoding sequence whose draft is behind rides along in a prefill step with one token", async () => {
    const { exec, scheduler } = scripted();
    // The policy measures plain steps first, so the first request's draft falls behind; the second
    // arrives while nothing is measured enough to prefer plain steps, so it prefills with the draft.
    const first = scheduler.submit([1, 2, 3, 4], 40, GREEDY, new Set());
    await until(first, 1);
    const second = scheduler.submit([6, 7, 8, 9, 10, 11], 4, GREEDY, new Set());
    await until(second, 4);
    await scheduler.idle();
    // The exploration of plain steps runs a few (pipelined: one may be in flight as the request
    // arrives); the next iteration prefills the new prompt with the draft, the first request's token
    // riding along.
    expect(exec.log.slice(0, 2)).toEqual(["prefill 4", "step 1"]);
    const joined = exec.log.indexOf("prefill 7");
    expect(joined, exec.log.join(", ")).toBeGreaterThan(1);
    expect(exec.log.slice(1, joined).every((l) => l === "step 1")).toBe(true);
  });
});

/**
 * Every call samples 100 + its index in every row, after a macrotask; records how many calls
 * were in flight at once and which were fed from the call before.
 */
class CountingExecutor implements StepExecutor {
  calls = 0;
  inFlight = 0;
  maxInFlight = 0;
  readonly fed: boolean[] = [];
  private lastRows = 0;
  async step(s: NativeStep): Promise<NativeStepResult> {
    const index = this.calls++;
    if (s.feedback) expect(Math.max(...s.feedback)).toBeLessThan(this.lastRows);
    this.fed.push(s.feedback !== undefined);
    this.lastRows = s.logitRows.length;
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    this.inFlight--;
    return { tokens: new Int32Array(s.logitRows.length).fill(100 + index), callMs: 1 };
  }
  prefillSpeculative(): Promise<NativeStepResult> {
    throw new Error("no draft");
  }
  speculativeRound(): Promise<NativeRoundResult> {
    throw new Error("no draft");
  }
}

describe("plain decoding, pipelined", () => {
  const setup = () => {
    const exec = new CountingExecutor();
    const scheduler = new Scheduler(exec, { maxStepTokens: 64, numPages: 64, pageSize: 16, maxRunning: 4, maxQueued: 8 });
    return { exec, scheduler };
  };

  it("launches each decode step before the previous one's tokens are back, and none past the length", async () => {
    const { exec, scheduler } = setup();
    const out = await collect(scheduler.submit([1, 2, 3], 10, GREEDY, new Set()));
    expect(out).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));
    expect(exec.calls).toBe(10);  // the prefill's token, then nine decode steps
    expect(exec.maxInFlight).toBe(2);
    expect(exec.fed.slice(2)).toEqual(Array(8).fill(true));
  });

  it("drops the token of the step in flight when a stop token comes back", async () => {
    const { exec, scheduler } = setup();
    const seq = scheduler.submit([1, 2, 3], 50, GREEDY, new Set([103]));
    expect(await collect(seq)).toEqual([100, 101, 102, 103]);
    expect(seq.finishReason).toBe("stop");
    await scheduler.idle();
    expect(exec.calls).toBe(5);  // one step more than the tokens kept
  });

  it("lets a request that arrives meanwhile join once the steps in flight are done", async () => {
    const { scheduler } = setup();
    const first = scheduler.submit([1, 2, 3], 30, GREEDY, new Set());
    const firstOut: number[] = [];
    let second: Promise<number[]> | undefined;
    for await (const e of first.events) {
      firstOut.push(...e.tokens);
      second ??= firstOut.length === 5 ? collect(scheduler.submit([4, 5], 6, GREEDY, new Set())) : undefined;
    }
    const secondOut = await second!;
    expect(firstOut).toHaveLength(30);
    expect(secondOut).toHaveLength(6);
    // Once the second has joined, both draw each call's token: they share steps.
    expect(secondOut.slice(1).every((t) => firstOut.includes(t))).toBe(true);
  });

  it("goes on pipelining while the waiting request could not get its pages anyway", async () => {
    const exec = new CountingExecutor();
    const scheduler = new Scheduler(exec, { maxStepTokens: 64, numPages: 4, pageSize: 16, maxRunning: 4, maxQueued: 8 });
    // 3 of the 4 pages for the first, 2 for the second: it waits for the first to end.
    const [first, second] = await Promise.all([collect(scheduler.submit([1, 2, 3], 40, GREEDY, new Set())),
      collect(scheduler.submit([4, 5, 6], 20, GREEDY, new Set()))]);
    expect([first.length, second.length]).toEqual([40, 20]);
    expect(exec.fed.slice(2, 39).every(Boolean), "the first request's decode steps were fed").toBe(true);
  });

  it("takes a waiting request in when a running one finishes, while the others go on", async () => {
    const exec = new CountingExecutor();
    const scheduler = new Scheduler(exec, { maxStepTokens: 64, numPages: 64, pageSize: 16, maxRunning: 2, maxQueued: 8 });
    const long = scheduler.submit([1, 2, 3], 200, GREEDY, new Set());
    const short = scheduler.submit([4, 5], 5, GREEDY, new Set());
    const waiting = scheduler.submit([6, 7], 5, GREEDY, new Set());
    const [, , third] = await Promise.all([collect(long), collect(short), collect(waiting)]);
    // The waiting request was done long before the long one: it did not wait for its end.
    expect(third).toHaveLength(5);
    expect(Math.max(...third)).toBeLessThan(100 + 30);
  });
});

/**
 * Rounds that each accept one draft (two tokens: 200 + round, then 300 + round), taking one
 * macrotask; it keeps each slot's true committed length, to check what chained rounds are told.
 */
class RoundExecutor implements StepExecutor {
  rounds = 0;
  inFlight = 0;
  maxInFlight = 0;
  readonly chained: boolean[] = [];
  private readonly committed = new Map<number, number>();
  async step(): Promise<NativeStepResult> {
    throw new Error("rounds only");
  }
  async prefillSpeculative(p: NativeSpecPrefill): Promise<NativeStepResult> {
    p.slots.forEach((slot, i) => this.committed.set(slot, p.kvLen[i]));
    return { tokens: new Int32Array(p.logitRows.length).fill(5), callMs: 1 };
  }
  async speculativeRound(r: NativeRound): Promise<NativeRoundResult> {
    const index = this.rounds++;
    this.chained.push(r.chained === true);
    r.slots.forEach((slot, b) => {
      const actual = this.committed.get(slot)!;
      if (r.chained) expect(r.committed[b], "a bound of the committed length").toBeGreaterThanOrEqual(actual);
      else expect(r.committed[b]).toBe(actual);
      this.committed.set(slot, actual + 2);
    });
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    this.inFlight--;
    const B = r.slots.length;
    return {
      tokens: Int32Array.from({ length: 2 * B }, (_, i) => (i % 2 ? 300 : 200) + index), counts: new Int32Array(B).fill(2),
      drafted: new Int32Array(B).fill(r.draftTokens - 1), trees: new Int32Array(B * r.draftTokens),
      draftMs: 0, verifyMs: 0, acceptMs: 0, deviceMs: 0, stageMs: 0, readMs: 0, callMs: 1,
    };
  }
}

describe("speculative rounds, pipelined", () => {
  const setup = () => {
    const exec = new RoundExecutor();
    const scheduler = new Scheduler(exec, {
      maxStepTokens: 64, numPages: 64, pageSize: 16, maxRunning: 4, maxQueued: 8,
      tree: new TreePolicy({ steps: 3, topk: 1, draftTokens: 4 }), speculation: "always",
    });
    return { exec, scheduler };
  };

  it("launches each round before the previous one's tokens are back, on bounds of the committed lengths, none that the length could end", async () => {
    const { exec, scheduler } = setup();
    const out = await collect(scheduler.submit([1, 2, 3], 21, GREEDY, new Set()));
    expect(out).toEqual([5, ...Array.from({ length: 10 }, (_, i) => [200 + i, 300 + i]).flat()]);
    expect(exec.maxInFlight).toBe(2);
    expect(exec.chained[0]).toBe(false);
    expect(exec.chained.filter(Boolean).length).toBeGreaterThan(5);
    // A round launched while the one ahead could still reach the length would be wasted: none was.
    expect(exec.rounds).toBe(10);
  });

  it("drops the tokens of the round in flight when a stop token comes back", async () => {
    const { exec, scheduler } = setup();
    const seq = scheduler.submit([1, 2, 3], 50, GREEDY, new Set([302]));
    expect(await collect(seq)).toEqual([5, 200, 300, 201, 301, 202, 302]);
    expect(seq.finishReason).toBe("stop");
    await scheduler.idle();
    expect(exec.rounds).toBe(4);  // one round more than the tokens kept
  });
});
