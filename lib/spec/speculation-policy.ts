/**
 * Whether to speculate, and with which tree, from measured throughput: per batch bucket, each
 * choice (plain decoding, or a round with one of the candidate trees) keeps the median of its
 * recent committed tokens per sequence per millisecond (per sequence, because a bucket spans
 * batch sizes up to 2× apart and one choice may be measured while the batch is full, another
 * while it drains; a median, because the iterations that capture a new graph are tens of times
 * slower). The best one runs; the others are re-measured now and then, less often while the best
 * one holds (far less often, at once, when it leads clearly), so that speculation that does not pay stops.
 * Iterations that admit requests are charged to the choice that led meanwhile (see recordJoin).
 */
import type { TreePolicy, TreeShape } from "./tree-policy.js";

export type Speculation = "auto" | "always";
export type Choice = { kind: "plain" } | { kind: "tree"; shape: TreeShape };
export interface PolicyChoice {
  bucket: string; choice: string; tokensPerSeqMs: number; samples: number; best: boolean; recent: number[];
  /** Share of its recent time spent in iterations admitting requests while it led. */
  joinShare: number;
  /** Its rate over that time too (tokens per sequence per ms): what it is compared by. */
  effectiveRate: number;
}

interface Arm {
  choice: Choice;
  rate: number;      // tokens per sequence per ms: median of `recent`
  recent: number[];  // the last WINDOW rates, none older than STALE iterations but the newest
  stamps: number[];  // the bucket iteration each of `recent` was measured in
  samples: number;
  lastTried: number;
  busyMs: number;      // its measured iterations' time,
  joinMs: number;      // the time of iterations admitting requests while it led,
  joinTokens: number;  // and the tokens per sequence those committed, all fading alike (KEEP)
}

interface Bucket {
  arms: Arm[];
  iteration: number;
  nextProbe: number;
  interval: number;
  best: number;
  followUp: number;  // arm whose probe beat the best, probed again next (−1: none)
}

const FIRST_PROBE = 16;
const MAX_INTERVAL = 128;  // a close second costs at most one iteration in 128
// A leader this much faster than every other choice is questioned at most once in CLEAR_INTERVAL
// iterations: each probe of a tree that cannot win costs a round and the draft's catch-up.
const CLEAR_LEAD = 1.3;
const CLEAR_INTERVAL = 1024;
const WINDOW = 9;
// A rarely probed choice's older rates were measured at other context lengths (on the trained pair
// at batch 32, a tree's window held its first rounds' 3.6-3.9 beside later probes' 1.2-2.1, and
// its median led plain decoding): rates this many iterations old are dropped when a new one comes.
const STALE = 2 * MAX_INTERVAL;
// A tree must measure this much faster than plain decoding to be chosen: what the medians do not
// show (graph captures, prefill steps that run the draft too) costs speculation, not plain steps.
// A draft catching up after plain steps is measured: as part of the round that needed it.
const PLAIN_BIAS = 1.05;
// Each time an arm's busy or join time grows, both are first scaled by KEEP: they reflect about
// the last 1 / (1 − KEEP) iterations it ran or led through.
const KEEP = 0.98;

const bias = (a: Arm) => (a.choice.kind === "plain" ? PLAIN_BIAS : 1);
/**
 * Its median rate over its measured time and the joins' tokens over theirs, in proportion to the
 * time it ran: its own joins where it has led through some, else the leader's (a choice never seen
 * leading is taken to admit requests as the leader does, so that neither is favoured unmeasured).
 */
const effective = (b: Bucket, a: Arm, rate = a.rate) => {
  const o = a.joinMs > 0 ? a : b.arms[b.best];
  return o.busyMs > 0 ? (rate + o.joinTokens / o.busyMs) / (1 + o.joinMs / o.busyMs) : rate;
};
const score = (b: Bucket, a: Arm) => effective(b, a) * bias(a);
const fade = (a: Arm, busyMs: number, joinMs: number, joinTokens: number) => {
  a.busyMs = a.busyMs * KEEP + busyMs;
  a.joinMs = a.joinMs * KEEP + joinMs;
  a.joinTokens = a.joinTokens * KEEP + joinTokens;
};
const clearLead = (b: Bucket) =>
  b.arms.every((a, i) => i === b.best || (a.samples >= 2 && score(b, b.arms[b.best]) > CLEAR_LEAD * score(b, a)));

export class SpeculationPolicy {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly trees: TreePolicy, readonly mode: Speculation = "auto") {}

  /** What the next iteration of `batch` decoding sequences runs (sampled: any of them samples). */
  choose(batch: number, sampled: boolean): Choice {
    if (this.mode === "always") return { kind: "tree", shape: this.trees.shapeFor(batch) };
    const b = this.bucket(batch, sampled);
    b.iteration++;
    // Every choice is measured twice first: its first run may capture graphs.
    let pick = b.arms.findIndex((a) => a.samples < 2);
    if (pick < 0 && b.iteration >= b.nextProbe) {
      pick = b.followUp >= 0 ? b.followUp : b.arms.reduce((oldest, a, i) => (i !== b.best && (oldest < 0 || a.lastTried < b.arms[oldest].lastTried) ? i : oldest), -1);
      b.followUp = -1;
      // A clear leader is questioned on the long interval at once: on a short run (a batch that
      // drains through its buckets) the doubling would not reach it before the run ends.
      b.interval = clearLead(b) ? CLEAR_INTERVAL : Math.min(2 * b.interval, MAX_INTERVAL);
      b.nextProbe = b.iteration + b.interval;
    }
    if (pick < 0) pick = b.best;
    b.arms[pick].lastTried = b.iteration;
    return b.arms[pick].choice;
  }

  /**
   * Whether plain steps are the measured best for `batch` sequences (no probe is counted): then
   * prompts are prefilled without the draft too, as plain decoding would, and the draft catches up
   * only if a tree is tried later.
   */
  prefersPlain(batch: number, sampled: boolean): boolean {
    if (this.mode === "always") return false;
    const b = this.bucket(batch, sampled), best = b.arms[b.best];
    return best.choice.kind === "plain" && best.samples >= 2;
  }

  /** The outcome of a choice: tokens committed over all `batch` sequences in `ms` of wall time. */
  record(batch: number, sampled: boolean, choice: Choice, tokens: number, ms: number): void {
    if (this.mode === "always" || ms <= 0 || batch <= 0) return;
    const b = this.bucket(batch, sampled);
    const arm = b.arms.find((a) => a.choice === choice);
    if (!arm) return;
    const rate = tokens / batch / ms;
    arm.samples++;
    fade(arm, ms, 0, 0);
    if (arm.samples === 1) return;  // warm-up run (a seeded prior already counts two)
    arm.recent.push(rate);
    arm.stamps.push(b.iteration);
    while (arm.recent.length > WINDOW || arm.stamps[0] < b.iteration - STALE) {
      arm.recent.shift();
      arm.stamps.shift();
    }
    // The lower median: a probe's one lucky round, followed up by an ordinary one, does not lead.
    const sorted = [...arm.recent].sort((x, y) => x - y);
    arm.rate = sorted[(sorted.length - 1) >> 1];
    // A probe that beats the current best is followed up at once, so that a change shows quickly.
    const leader = b.arms[b.best];
    if (arm !== leader && leader.samples >= 2 && effective(b, arm, rate) * bias(arm) > score(b, leader)) {
      b.interval = FIRST_PROBE;
      b.nextProbe = b.iteration + 1;
      b.followUp = b.arms.indexOf(arm);
    }
    settle(b);
  }

  /**
   * An iteration of `ms` that admitted requests (a prefill with the draft while a tree leads, a
   * mixed step while plain decoding does) and committed `tokens` over `batch` sequences, charged
   * to the measured leader: under speculation sequences finish out of step and requests join one at
   * a time, each in an iteration of its own (trained pair, MT-Bench batch 32: 104 prefill
   * iterations, 28% of the time spent with rounds, against 11 mixed steps without), which the rates
   * of the decoding iterations do not see.
   */
  recordJoin(batch: number, sampled: boolean, tokens: number, ms: number): void {
    if (this.mode === "always" || !(ms > 0) || batch <= 0) return;
    const b = this.bucket(batch, sampled), leader = b.arms[b.best];
    if (leader.samples < 2) return;
    fade(leader, 0, ms, tokens / batch);
    settle(b);
  }

  /** Measured tokens per sequence per ms of each choice, and the recent rates its median is of (diagnostics). */
  snapshot(): PolicyChoice[] {
    const out = [];
    for (const [key, b] of this.buckets)
      for (const [i, a] of b.arms.entries())
        out.push({ bucket: key, choice: describe(a.choice), tokensPerSeqMs: a.rate, samples: a.samples, best: i === b.best, recent: [...a.recent],
          joinShare: a.busyMs > 0 ? a.joinMs / (a.busyMs + a.joinMs) : 0, effectiveRate: effective(b, a) });
    return out;
  }

  private bucket(batch: number, sampled: boolean): Bucket {
    const size = batchBucket(batch);
    const key = `${size}${sampled ? "s" : "g"}`;
    let b = this.buckets.get(key);
    if (!b) {
      const arms: Arm[] = [{ kind: "plain" } as Choice, ...this.trees.candidates(batch).map((shape): Choice => ({ kind: "tree", shape }))]
        .map((choice) => ({ choice, rate: 0, recent: [], stamps: [], samples: 0, lastTried: 0, busyMs: 0, joinMs: 0, joinTokens: 0 }));
      b = { arms, iteration: 0, nextProbe: FIRST_PROBE, interval: FIRST_PROBE, best: 1, followUp: -1 };
      this.seed(b, size, sampled);
      this.buckets.set(key, b);
    }
    return b;
  }

  /**
   * A new bucket starts from the nearest measured one (same sampling): the choices both have take
   * its medians as priors that the first own measurement replaces.
   * Only the others are explored, so a batch that shrinks as requests finish does not explore
   * every choice again.
   */
  private seed(b: Bucket, size: number, sampled: boolean): void {
    let near: [number, Bucket] | undefined;
    for (const [key, other] of this.buckets) {
      const n = Number.parseInt(key, 10);
      if (key.endsWith(sampled ? "s" : "g") && other.arms.some((a) => a.samples >= 2) &&
          (!near || Math.abs(Math.log2(n / size)) < Math.abs(Math.log2(near[0] / size)))) near = [n, other];
    }
    if (!near) return;
    const other = near[1];
    // Where plain decoding leads clearly, a tree the nearest bucket has not run takes its best
    // tree's rate: probed on the long interval, not explored at once (a draining batch crosses
    // buckets whose candidate trees differ, and each exploration costs rounds and catch-ups).
    const plainLeads = other.arms[other.best].choice.kind === "plain" && clearLead(other);
    const bestTree = Math.max(0, ...other.arms.filter((a) => a.choice.kind === "tree" && a.samples >= 2).map((a) => a.rate));
    for (const arm of b.arms) {
      const twin = other.arms.find((a) => a.samples >= 2 && describe(a.choice) === describe(arm.choice));
      if (!twin && !(plainLeads && arm.choice.kind === "tree")) continue;
      arm.rate = twin ? twin.rate : bestTree;
      arm.samples = 2;
      if (twin) [arm.busyMs, arm.joinMs, arm.joinTokens] = [twin.busyMs, twin.joinMs, twin.joinTokens];
    }
    if (plainLeads) b.nextProbe = b.interval = other.interval;
    b.best = b.arms.reduce((bi, a, i) => (a.samples >= 2 && (b.arms[bi].samples < 2 || score(b, a) > score(b, b.arms[bi])) ? i : bi), b.best);
  }
}

/** The best-scoring measured choice leads; a new leader is questioned soon. */
function settle(b: Bucket): void {
  const best = b.arms.reduce((bi, a, i) => (a.samples >= 2 && score(b, a) > score(b, b.arms[bi]) ? i : bi), b.best);
  if (best === b.best) return;
  b.best = best;
  b.interval = FIRST_PROBE;
  b.nextProbe = b.iteration + FIRST_PROBE;
}

/** The policy measures batches in power-of-two buckets: the bucket of `batch` decoding sequences. */
export function batchBucket(batch: number): number {
  let size = 1;
  while (size < batch) size *= 2;
  return size;
}

function describe(c: Choice): string {
  return c.kind === "plain" ? "plain" : `tree ${c.shape.steps}/${c.shape.topk}/${c.shape.draftTokens}`;
}
