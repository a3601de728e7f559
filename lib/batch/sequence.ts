/** One request's state inside the scheduler. */
import type { SpeculativeCounters } from "../spec/stats.js";
import { Channel } from "./channel.js";

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
  seed: number;
}

/** Greedy decoding: argmax of every row. */
export const GREEDY: Readonly<SamplingOptions> = { temperature: 0, topK: 0, topP: 1, seed: 0 };

export type FinishReason = "stop" | "length" | "abort";

export interface SequenceEvent {
  tokens: number[];
  finishReason?: FinishReason;
}

export class Sequence {
  /** Prompt then generated tokens. */
  readonly tokens: number[];
  /** Tokens whose K/V are in the cache. */
  cached = 0;
  /** Context positions the draft has run over (speculative decoding); behind `cached` after plain steps. */
  drafted = 0;
  /** This request's speculative counters (with a draft): its rounds, and the time of the rounds it was in. */
  speculative?: SpeculativeCounters;
  pages: number[] = [];
  /** The draft-state slot it holds while running (speculative decoding). */
  slot = -1;
  generated = 0;
  /** Draw counters taken so far: each launched step or round that samples for it takes the next. */
  private draws = 0;
  finishReason?: FinishReason;
  readonly events = new Channel<SequenceEvent>();
  readonly submittedAt = performance.now();
  firstTokenAt?: number;

  constructor(
    readonly id: number,
    readonly promptLength: number,
    prompt: readonly number[],
    readonly maxNewTokens: number,
    readonly sampling: SamplingOptions,
    readonly stopTokens: ReadonlySet<number>,
  ) {
    this.tokens = [...prompt];
  }

  /** The counter of the uniforms (seed, counter, lane) of the next launch that samples for it. */
  takeDraw(): number {
    return this.draws++;
  }

  get done(): boolean {
    return this.finishReason !== undefined;
  }

  /** Tokens not yet in the KV cache (the prompt remainder, or the last sampled token). */
  get pending(): number {
    return this.tokens.length - this.cached;
  }
}
