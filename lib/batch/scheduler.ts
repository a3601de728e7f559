/**
 * Continuous batching: requests join and leave between steps; each step carries every running
 * sequence's next decode token plus as much prefill as the token budget allows. KV pages for a
 * request's whole length are reserved when it is admitted, so a running request never stalls.
 */
import { Eagle3Error, ErrorCode } from "../errors.js";
import type { NativeStep, NativeStepResult } from "../native.js";
import { PageAllocator } from "./page-allocator.js";
import { type SamplingOptions, Sequence } from "./sequence.js";
import { type StepEntry, buildStep } from "./step-plan.js";

export interface StepExecutor {
  step(step: NativeStep): Promise<NativeStepResult>;
}

export interface SchedulerOptions {
  maxStepTokens: number;
  numPages: number;
  pageSize: number;
  /** Sequences decoding at once. */
  maxRunning: number;
  /** Requests waiting for admission before submit() throws ERR_QUEUE_FULL. */
  maxQueued: number;
}

export interface SchedulerStats {
  steps: number;
  stepSeconds: number;
  promptTokens: number;
  generatedTokens: number;
  running: number;
  queued: number;
}

export class Scheduler {
  private readonly pages: PageAllocator;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private nextId = 0;
  private loop?: Promise<void>;
  private readonly counters = { steps: 0, stepSeconds: 0, promptTokens: 0, generatedTokens: 0 };

  constructor(private readonly executor: StepExecutor, readonly options: SchedulerOptions) {
    this.pages = new PageAllocator(options.numPages);
  }

  /** Capacity in tokens of one sequence: what its pages can hold. */
  get maxSequenceTokens(): number {
    return this.options.numPages * this.options.pageSize;
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
    return { ...this.counters, running: this.running.length, queued: this.waiting.length };
  }

  /** Resolves when no request is running or waiting. */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  private kick(): void {
    this.loop ??= this.run().finally(() => {
      this.loop = undefined;
      if (this.waiting.length) this.kick();
    });
  }

  private async run(): Promise<void> {
    for (;;) {
      this.retire();
      this.admit();
      if (!this.running.length) return;
      const entries = this.plan();
      const t0 = performance.now();
      let result: NativeStepResult;
      try {
        result = await this.executor.step(buildStep(entries));
      } catch (err) {
        for (const e of entries) this.finish(e.seq, err);
        continue;
      }
      this.counters.steps++;
      this.counters.stepSeconds += (performance.now() - t0) / 1000;
      this.apply(entries, result);
    }
  }

  private admit(): void {
    while (this.waiting.length && this.running.length < this.options.maxRunning) {
      const seq = this.waiting[0];
      const need = Math.ceil((seq.promptLength + seq.maxNewTokens) / this.options.pageSize);
      const pages = this.pages.alloc(need);
      if (!pages) return;
      seq.pages = pages;
      this.waiting.shift();
      this.running.push(seq);
      this.counters.promptTokens += seq.promptLength;
    }
  }

  /** Decode tokens first (latency), then prefill chunks in arrival order, within the budget. */
  private plan(): StepEntry[] {
    let budget = this.options.maxStepTokens;
    const entries: StepEntry[] = [];
    const ordered = [...this.running].sort((a, b) => Number(a.pending > 1) - Number(b.pending > 1));
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
    for (const { seq, count, samples } of entries) {
      if (seq.done) {
        if (samples) row++;
        continue;  // cancelled while the step ran
      }
      seq.cached += count;
      if (!samples) continue;
      const token = result.tokens![row++];
      seq.tokens.push(token);
      seq.generated++;
      seq.firstTokenAt ??= performance.now();
      this.counters.generatedTokens++;
      const finish = seq.stopTokens.has(token) ? "stop" : seq.generated >= seq.maxNewTokens ? "length" : undefined;
      seq.events.push({ tokens: [token], finishReason: finish });
      if (finish) {
        seq.finishReason = finish;
        seq.events.close();
      }
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
      this.running.splice(i, 1);
    }
  }
}
