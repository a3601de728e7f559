/**
 * Continuous batching: requests join and leave between steps. Plain decoding: each step carries
 * every running sequence's next decode token plus as much prefill as the token budget allows.
 * Speculative decoding: prefill steps (which also run the draft, and carry the decoding sequences
 * one token further) go first; once no request is prefilling, each iteration is a round that
 * drafts, verifies and accepts for every running sequence, or a plain step where the speculation
 * policy measured that faster (the draft then catches up before the next round). Where the policy
 * measured plain steps faster, prompts are prefilled in plain steps as well, without the draft.
 * KV pages for a request's whole length (and a round's scratch) are reserved when it is admitted,
 * so a running request never stalls. Runs of plain decode steps, and runs of rounds, are pipelined:
 * each is launched before the previous one's tokens are back (the device feeds a step its tokens,
 * and a round its committed lengths and roots), so that the host's work overlaps the device's.
 */
import { Eagle3Error, ErrorCode } from "../errors.js";
import type { NativeRound, NativeRoundResult, NativeSpecPrefill, NativeStep, NativeStepResult } from "../native.js";
import { type Choice, SpeculationPolicy, type Speculation } from "../spec/speculation-policy.js";
import { SpeculativeCounters, type SpeculativeStats } from "../spec/stats.js";
import type { TreePolicy, TreeShape } from "../spec/tree-policy.js";
import { type IterationKind, IterationTimes, type IterationTimesSnapshot } from "./iteration-times.js";
import { PageAllocator } from "./page-allocator.js";
import { type SamplingOptions, Sequence } from "./sequence.js";
import { type StepEntry, buildSpecPrefill, buildStep, packSampling } from "./step-plan.js";

type TreeChoice = Extract<Choice, { kind: "tree" }>;

// A run of plain steps when they are not the measured best (an exploration or a probe): its first
// step fills the pipeline, the others are measured. Long enough to measure the steady rate: on the
// trained pair at batch 32 (MT-Bench), runs of three read 1.6-2.0 tokens per sequence per ms where
// that engine's plain steps averaged 2.1, and a tree that lost 10% was chosen over them.
export const PLAIN_PROBE_STEPS = 8;

export interface StepExecutor {
  step(step: NativeStep): Promise<NativeStepResult>;
  prefillSpeculative(p: NativeSpecPrefill): Promise<NativeStepResult>;
  speculativeRound(r: NativeRound): Promise<NativeRoundResult>;
}

export interface SchedulerOptions {
  maxStepTokens: number;
  numPages: number;
  pageSize: number;
  /** Sequences decoding at once. */
  maxRunning: number;
  /** Requests waiting for admission before submit() throws ERR_QUEUE_FULL. */
  maxQueued: number;
  /** Speculative decoding with this tree policy (the executor has a draft). */
  tree?: TreePolicy;
  /** "auto": speculate only where it measures faster than plain decoding; "always": every round. */
  speculation?: Speculation;
  /** Profile one round in this many (device time per phase); 0 = never. */
  profileEvery?: number;
}

export interface SchedulerStats {
  steps: number;
  stepSeconds: number;
  promptTokens: number;
  generatedTokens: number;
  running: number;
  queued: number;
  /** Wall time per kind of iteration (decode, mixed, prefill, round, catchUp). */
  iterations: IterationTimesSnapshot;
  /** With a draft: accepted lengths, acceptance per position, phase times, the policy's choices. */
  speculative?: SpeculativeStats;
}

export class Scheduler {
  private readonly pages: PageAllocator;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private nextId = 0;
  private loop?: Promise<void>;
  private readonly counters = { steps: 0, stepSeconds: 0, promptTokens: 0, generatedTokens: 0 };
  private readonly times = new IterationTimes();
  private readonly spec?: SpeculativeCounters;
  private readonly policy?: SpeculationPolicy;
  private readonly freeSlots: number[];
  /**
   * The choice the speculation policy made for the next iteration of `batch` sequences when it
   * ended a pipelined run (it stands only if the batch is still that one's).
   */
  private nextChoice?: { choice: Choice; batch: number; sampled: boolean };

  constructor(private readonly executor: StepExecutor, readonly options: SchedulerOptions) {
    this.pages = new PageAllocator(options.numPages);
    if (options.tree) {
      this.spec = new SpeculativeCounters();
      this.policy = new SpeculationPolicy(options.tree, options.speculation);
    }
    this.freeSlots = Array.from({ length: options.maxRunning }, (_, i) => options.maxRunning - 1 - i);
  }

  /** Capacity in tokens of one sequence: what its pages can hold (less a round's scratch). */
  get maxSequenceTokens(): number {
    return this.options.numPages * this.options.pageSize - this.scratch;
  }

  private get scratch(): number {
    return this.options.tree ? this.options.tree.scratchTokens + 1 : 0;
  }

  submit(prompt: readonly number[], maxNewTokens: number, sampling: SamplingOptions, stopTokens: ReadonlySet<number>): Sequence {
    const total = prompt.length + maxNewTokens;
    if (total > this.maxSequenceTokens)
      throw new Eagle3Error(
        ErrorCode.INVALID_ARGUMENT,
        `a request of ${prompt.length} prompt + ${maxNewTokens} new tokens does not fit the KV cache of ${this.maxSequenceTokens} tokens`,
      );
    if (this.waiting.length >= this.options.maxQueued)
      throw new Eagle3Error(ErrorCode.QUEUE_FULL, `the request queue is full (${this.options.maxQueued} waiting)`);
    const seq = new Sequence(this.nextId++, prompt.length, prompt, maxNewTokens, sampling, stopTokens);
    if (this.options.tree) seq.speculative = new SpeculativeCounters();
    this.waiting.push(seq);
    this.kick();
    return seq;
  }

  /** Ends a request early; its pages are freed before the next step. */
  cancel(seq: Sequence): void {
    if (seq.done) return;
    seq.finishReason = "abort";
    seq.events.close();
    const i = this.waiting.indexOf(seq);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  stats(): SchedulerStats {
    return {
      ...this.counters, running: this.running.length, queued: this.waiting.length, iterations: this.times.snapshot(),
      speculative: this.spec && { ...this.spec.snapshot(), choices: this.policy!.snapshot() },
    };
  }

  /** Resolves when no request is running or waiting. */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /**
   * Starts the loop on the next macrotask, so that requests submitted in the same turn of the
   * event loop are admitted to the same first step (and, being scheduled alike, draw alike).
   */
  private kick(): void {
    this.loop ??= new Promise((resolve) => setImmediate(resolve)).then(() => this.run()).finally(() => {
      this.loop = undefined;
      if (this.waiting.length) this.kick();
    });
  }

  private async run(): Promise<void> {
    for (;;) {
      this.retire();
      this.admit();
      if (!this.running.length) return;
      const prefilling = this.running.filter((s) => s.cached < s.promptLength);
      const t0 = performance.now();
      let steps = 1;
      try {
        if (!this.options.tree && prefilling.length) await this.plainStep();
        else if (!this.options.tree) steps = await this.decodeAhead();
        else if (prefilling.length) await this.join();
        else steps = await this.decodeSpeculative();
      } catch (err) {
        for (const s of this.running) this.finish(s, err);
        continue;
      }
      this.counters.steps += steps;
      this.counters.stepSeconds += (performance.now() - t0) / 1000;
    }
  }

  /**
   * With a draft, prompts in an iteration of their own. Its time is charged to the policy's leader
   * where it held up decoding sequences: prompts that start together, with nothing decoding, cost
   * the same whichever choice leads.
   */
  private async join(): Promise<void> {
    const batch = this.running.length, sampled = this.running.some((s) => s.sampling.temperature > 0);
    const decoding = this.running.some((s) => !s.done && s.cached >= s.promptLength);
    const t0 = performance.now(), before = this.counters.generatedTokens;
    // Prefilled with the draft unless plain steps measure faster for this batch.
    await (this.policy!.prefersPlain(batch, sampled) ? this.plainStep() : this.prefillStep());
    if (decoding) this.policy!.recordJoin(batch, sampled, this.counters.generatedTokens - before, performance.now() - t0);
  }

  private async plainStep(): Promise<void> {
    const entries = this.plan(this.running);
    const kind = entries.every((e) => e.count === 1) ? "decode" : "mixed";
    const result = await this.timed(kind, () => entries.reduce((n, e) => n + e.count, 0), async () => {
      const r = await this.executor.step(buildStep(entries));
      return [r, r.captured === true];
    });
    this.apply(entries, result);
  }

  /** Runs one iteration of `kind`; `body` returns its result and whether it recorded a graph. */
  private async timed<T>(kind: IterationKind, tokens: (result: T) => number, body: () => Promise<[T, boolean]>): Promise<T> {
    const t0 = performance.now();
    const [result, captured] = await body();
    this.times.add(kind, tokens(result), performance.now() - t0, captured);
    return result;
  }

  /**
   * Decoding with a draft: rounds, or plain steps where those measure faster, either pipelined for
   * as long as the policy keeps choosing the same kind. The number of iterations it ran.
   */
  private async decodeSpeculative(): Promise<number> {
    const seqs = this.running.filter((s) => !s.done);
    const sampled = seqs.some((s) => s.sampling.temperature > 0);
    const made = this.nextChoice;
    this.nextChoice = undefined;
    const choice: Choice = made && made.batch === seqs.length && made.sampled === sampled ? made.choice : this.policy!.choose(seqs.length, sampled);
    if (choice.kind === "plain") {
      // Measured per step as the time between two steps' tokens, which neither the event loop's
      // other work (consumers reading tokens) nor the pipelining distorts; the first step of a run
      // is not measured (nothing ran ahead of it: its time is its launch to its tokens). Pipelined
      // while plain steps are the measured best; an exploration or a probe is PLAIN_PROBE_STEPS
      // steps, so that it measures the steps plain decoding would run.
      let launched = 0, measuredSteps = 0;
      return this.decodeAhead(
        (batch) => {
          if (++launched <= PLAIN_PROBE_STEPS) return true;
          if (!this.policy!.prefersPlain(batch, sampled)) return false;
          const next = this.policy!.choose(batch, sampled);
          if (next.kind === "plain") return true;
          this.nextChoice = { choice: next, batch, sampled };
          return false;
        },
        (batch, tokens, ms, captured) => {
          if (measuredSteps++ > 0 && !captured) this.policy!.record(batch, sampled, choice, tokens, ms);
        },
      );
    }
    // After plain steps the draft catches up first; its time counts against the first round: it is
    // the price of switching, and a tree that only wins without it does not pay.
    const t0 = performance.now();
    while (seqs.some((s) => s.drafted < s.cached)) await this.catchUp(seqs);
    return this.roundsAhead(seqs, choice, sampled, t0);
  }

  /**
   * Rounds of `seqs`, each launched chained before the previous one's tokens are back, for as long
   * as the policy chooses rounds for this batch, no waiting request could join and every sequence
   * has room and tokens left after the round in flight. A round is measured (for the policy) as
   * the time between two rounds' tokens, the first from `since`. The number of rounds run.
   */
  private async roundsAhead(seqs: Sequence[], first: TreeChoice, sampled: boolean, since: number): Promise<number> {
    type Launched = { choice: TreeChoice; bounds: Int32Array; profiled: boolean; result: Promise<NativeRoundResult> };
    const launch = (choice: TreeChoice, prev?: Launched): Launched => {
      const { shape } = choice;
      // A chained round's sequences hold at most the previous round's tokens more than it knew.
      const bounds = prev ? prev.bounds.map((c) => c + prev.choice.shape.steps + 1) : Int32Array.from(seqs, (s) => s.cached);
      const every = this.options.profileEvery ?? 0;
      const profiled = every > 0 && (this.spec!.iterations + Number(prev !== undefined)) % every === 0;
      const result = this.executor.speculativeRound(this.roundPlan(seqs, shape, bounds, profiled, prev !== undefined));
      result.catch(() => {});  // awaited below; not an unhandled rejection meanwhile
      return { choice, bounds, profiled, result };
    };
    const { pageSize } = this.options, room = this.scratch;
    const chainable = (prev: Launched): boolean => {
      if (this.joinable()) return false;
      const grow = prev.choice.shape.steps + 1;
      return seqs.every((s, i) => !s.done && s.generated + grow < s.maxNewTokens &&
        prev.bounds[i] + grow + room <= s.pages.length * pageSize);
    };
    let current: Launched | undefined = launch(first);
    let last = since, rounds = 0;
    while (current) {
      let next: Launched | undefined;
      if (chainable(current)) {
        const choice = this.policy!.choose(seqs.length, sampled);
        if (choice.kind === "tree") next = launch(choice, current);
        else this.nextChoice = { choice, batch: seqs.length, sampled };
      }
      const r = await settledAhead(current.result, next?.result);
      const now = performance.now(), before = this.counters.generatedTokens;
      this.applyRound(seqs, r, now - last, current.profiled);
      // Rounds that profiled phases or recorded a graph are slower than their kind: not measured.
      if (!current.profiled && r.captured !== true)
        this.policy!.record(seqs.length, sampled, current.choice, this.counters.generatedTokens - before, now - last);
      last = now;
      rounds++;
      current = next;
    }
    return rounds;
  }

  /**
   * Plain decode steps of every running sequence, each launched before the previous one's tokens
   * are back: the device feeds them (NativeStep.feedback). Goes on while `more(batch)` agrees, no
   * waiting request could join and some sequence has tokens left; a sequence that stops (a stop
   * token the host sees one step late, or a cancel) rides along one step more and that step's
   * token is dropped. `measured` gets each step's committed tokens and the ms since the previous
   * step's tokens came back. The number of steps run.
   */
  private async decodeAhead(
    more: (batch: number) => boolean = () => true,
    measured?: (batch: number, tokens: number, ms: number, captured: boolean) => void,
  ): Promise<number> {
    type Launched = { entries: StepEntry[]; result: Promise<NativeStepResult> };
    const launch = (entries: StepEntry[]): Launched | undefined => {
      if (!entries.length || !more(entries.length)) return undefined;
      const result = this.executor.step(buildStep(entries));
      result.catch(() => {});  // awaited below; not an unhandled rejection meanwhile
      return { entries, result };
    };
    let current = launch(this.plan(this.running))!;
    let last = performance.now(), steps = 0;
    while (current) {
      // Row i of a decode step is its entry i's draw.
      const next = this.joinable() ? undefined : launch(current.entries.flatMap(({ seq }, i): StepEntry[] =>
        !seq.done && seq.generated + 1 < seq.maxNewTokens ? [{ seq, count: 1, samples: true, fedFrom: i }] : []));
      const result = await settledAhead(current.result, next?.result);
      const now = performance.now(), before = this.counters.generatedTokens;
      this.apply(current.entries, result);
      this.times.add("decode", current.entries.length, now - last, result.captured === true);
      measured?.(current.entries.length, this.counters.generatedTokens - before, now - last, result.captured === true);
      last = now;
      steps++;
      current = next!;
    }
    return steps;
  }

  /**
   * After plain steps the draft is behind: it runs over the positions it missed, as a prefill
   * whose next tokens are all known, on the features the plain steps kept (the target does not
   * run again).
   */
  private async catchUp(seqs: Sequence[]): Promise<void> {
    let budget = this.options.maxStepTokens;
    const entries: StepEntry[] = [];
    for (const seq of seqs) {
      const count = Math.min(seq.cached - seq.drafted, budget);
      if (count <= 0) continue;
      budget -= count;
      entries.push({ seq, count, start: seq.drafted, samples: false });
    }
    const plan = { ...buildSpecPrefill(entries, (e) => e.start! + e.count === e.seq.cached), storedFeatures: true };
    await this.timed("catchUp", () => plan.tokens.length, async () => [await this.executor.prefillSpeculative(plan), false]);
    for (const e of entries) e.seq.drafted = e.start! + e.count;
  }

  /**
   * Prefill chunks of the sequences still prefilling, with the draft running over the same tokens.
   * Decoding sequences ride along as they would in a plain step (one token each, sampled), so that
   * they do not stall while others prefill. A sequence whose draft is behind (after plain steps,
   * or prompt chunks prefilled without it) stays behind and catches up later from the features
   * this step keeps.
   */
  private async prefillStep(): Promise<void> {
    let budget = this.options.maxStepTokens;
    const entries: StepEntry[] = [];
    for (const seq of this.running) {
      if (seq.done || seq.cached < seq.promptLength || budget === 0) continue;
      budget--;
      entries.push({ seq, count: 1, samples: true });
    }
    for (const seq of this.running) {
      if (seq.done || seq.cached >= seq.promptLength || budget === 0) continue;
      const count = Math.min(seq.pending, budget);
      budget -= count;
      entries.push({ seq, count, samples: count === seq.pending });
    }
    const current = new Set(entries.filter((e) => e.seq.drafted === e.seq.cached).map((e) => e.seq));
    const plan = buildSpecPrefill(entries, (e) => e.samples && current.has(e.seq));
    const result = await this.timed("prefill", () => plan.tokens.length, async () => [await this.executor.prefillSpeculative(plan), false]);
    this.apply(entries, result);
    for (const { seq } of entries) if (current.has(seq)) seq.drafted = seq.cached;
  }

  /** The round of `seqs` with the tree `shape`, their committed lengths (or bounds, chained) given. */
  private roundPlan(seqs: Sequence[], shape: TreeShape, committed: Int32Array, profile: boolean, chained: boolean): NativeRound {
    const maxPages = Math.max(...seqs.map((s) => s.pages.length));
    const pageTable = new Int32Array(seqs.length * maxPages);
    seqs.forEach((s, i) => pageTable.set(s.pages, i * maxPages));
    return {
      ...shape,
      slots: Int32Array.from(seqs, (s) => s.slot),
      committed,
      roots: chained ? new Int32Array(seqs.length) : Int32Array.from(seqs, (s) => s.tokens[s.cached]),
      pageTable,
      maxPages,
      sampling: packSampling(seqs),
      profile,
      chained,
    };
  }

  /** A round's tokens into its sequences (a finished one's are dropped), and its statistics. */
  private applyRound(seqs: Sequence[], r: NativeRoundResult, wallMs: number, profiled: boolean): void {
    const tokens = r.counts.reduce((n, c) => n + c, 0);
    this.times.add("round", tokens, wallMs, r.captured === true);
    const timing = { ...r, wallMs, profiled };
    this.spec!.time(timing);
    let at = 0;
    seqs.forEach((seq, i) => {
      const got = Array.from(r.tokens.subarray(at, at + r.counts[i]));
      at += r.counts[i];
      this.spec!.record(r.counts[i], r.drafted[i]);
      seq.speculative?.record(r.counts[i], r.drafted[i]);
      seq.speculative?.time(timing);
      if (seq.done) return;  // cancelled while the round ran
      seq.cached += got.length;  // the root and the accepted drafts are now in the cache
      seq.drafted = seq.cached;
      this.emit(seq, got);
    });
  }

  /**
   * Whether the next waiting request could join if the run ended now: finished sequences keep their
   * place in `running` and their pages until a run ends, so both are counted as free.
   */
  private joinable(): boolean {
    if (!this.waiting.length) return false;
    const done = this.running.filter((s) => s.done);
    return this.running.length - done.length < this.options.maxRunning &&
      this.pagesFor(this.waiting[0]) <= this.pages.free + done.reduce((n, s) => n + s.pages.length, 0);
  }

  /** KV pages a request's whole length needs, with a round's scratch. */
  private pagesFor(seq: Sequence): number {
    return Math.ceil((seq.promptLength + seq.maxNewTokens + this.scratch) / this.options.pageSize);
  }

  private admit(): void {
    while (this.waiting.length && this.running.length < this.options.maxRunning) {
      const seq = this.waiting[0];
      const pages = this.pages.alloc(this.pagesFor(seq));
      if (!pages) return;
      seq.pages = pages;
      seq.slot = this.freeSlots.pop()!;
      this.waiting.shift();
      this.running.push(seq);
      this.counters.promptTokens += seq.promptLength;
    }
  }

  /** Decode tokens first (latency), then prefill chunks in arrival order, within the budget. */
  private plan(seqs: Sequence[]): StepEntry[] {
    let budget = this.options.maxStepTokens;
    const entries: StepEntry[] = [];
    const ordered = [...seqs].sort((a, b) => Number(a.pending > 1) - Number(b.pending > 1));
    for (const seq of ordered) {
      if (budget === 0) break;
      const count = Math.min(seq.pending, budget);
      budget -= count;
      entries.push({ seq, count, samples: count === seq.pending });
    }
    return entries;
  }

  private apply(entries: StepEntry[], result: NativeStepResult): void {
    let row = 0;
    for (const { seq, count, samples, start = seq.cached } of entries) {
      if (seq.done) {
        if (samples) row++;
        continue;  // cancelled while the step ran
      }
      seq.cached = start + count;
      if (samples) this.emit(seq, [result.tokens![row++]]);
    }
  }

  /** Appends new tokens up to the first stop, and streams them. */
  private emit(seq: Sequence, tokens: number[]): void {
    const kept: number[] = [];
    let finish: "stop" | "length" | undefined;
    for (const token of tokens) {
      seq.tokens.push(token);
      seq.generated++;
      kept.push(token);
      finish = seq.stopTokens.has(token) ? "stop" : seq.generated >= seq.maxNewTokens ? "length" : undefined;
      if (finish) break;
    }
    seq.firstTokenAt ??= performance.now();
    this.counters.generatedTokens += kept.length;
    seq.events.push({ tokens: kept, finishReason: finish });
    if (finish) {
      seq.finishReason = finish;
      seq.events.close();
    }
  }

  private finish(seq: Sequence, err: unknown): void {
    if (seq.done) return;
    seq.finishReason = "abort";
    seq.events.fail(err);
  }

  /** Frees the pages of finished sequences. */
  private retire(): void {
    for (let i = this.running.length - 1; i >= 0; i--) {
      const seq = this.running[i];
      if (!seq.done) continue;
      this.pages.release(seq.pages);
      seq.pages = [];
      this.freeSlots.push(seq.slot);
      this.running.splice(i, 1);
    }
  }
}

/** The result of the launch in flight; when it fails, the one launched behind it is waited for too. */
async function settledAhead<T>(current: Promise<T>, next?: Promise<unknown>): Promise<T> {
  try {
    return await current;
  } catch (err) {
    await next?.catch(() => {});
    throw err;
  }
}
