/** Speculative decoding counters: accepted lengths, acceptance per draft position, phase times. */
import type { PolicyChoice } from "./speculation-policy.js";

export interface SpeculativeStats {
  /** Sequence-rounds: one per sequence per round. */
  rounds: number;
  /** Rounds of the whole batch (native calls). */
  iterations: number;
  /** Tokens committed per round per sequence (accepted drafts + the bonus), averaged. */
  meanAcceptedLength: number;
  draftedTokens: number;
  acceptedTokens: number;
  /** Share of rounds whose path reached draft position i + 1. */
  acceptanceByPosition: number[];
  /** Wall time of the iterations, and the device time within them. */
  wallMs: number;
  deviceMs: number;
  /** Wall time not covered by device work (planning, uploads, N-API, bookkeeping). */
  hostMs: number;
  /** Device time per phase, summed over the profiled iterations only. */
  profiledIterations: number;
  draftMs: number;
  verifyMs: number;
  acceptMs: number;
  /** What the speculation policy measured per batch bucket: tokens per sequence per ms of each choice. */
  choices?: PolicyChoice[];
}

export interface RoundTiming {
  draftMs: number;
  verifyMs: number;
  acceptMs: number;
  deviceMs: number;
  wallMs: number;
  profiled: boolean;
}

export class SpeculativeCounters {
  private rounds = 0;
  private committed = 0;
  private drafted = 0;
  private readonly reached: number[] = [];
  private t = { iterations: 0, wallMs: 0, deviceMs: 0, profiledIterations: 0, draftMs: 0, verifyMs: 0, acceptMs: 0 };

  /** One sequence's outcome in one round: it committed `count` tokens from `drafted` drafts. */
  record(count: number, drafted: number): void {
    this.rounds++;
    this.committed += count;
    this.drafted += drafted;
    for (let i = 0; i < count - 1; i++) this.reached[i] = (this.reached[i] ?? 0) + 1;
  }

  get iterations(): number {
    return this.t.iterations;
  }

  time(r: RoundTiming): void {
    this.t.iterations++;
    this.t.wallMs += r.wallMs;
    this.t.deviceMs += r.deviceMs;
    if (!r.profiled) return;
    this.t.profiledIterations++;
    this.t.draftMs += r.draftMs;
    this.t.verifyMs += r.verifyMs;
    this.t.acceptMs += r.acceptMs;
  }

  snapshot(): SpeculativeStats {
    return {
      rounds: this.rounds,
      meanAcceptedLength: this.rounds ? this.committed / this.rounds : 0,
      draftedTokens: this.drafted,
      acceptedTokens: this.committed - this.rounds,
      acceptanceByPosition: this.reached.map((n) => n / Math.max(1, this.rounds)),
      ...this.t,
      hostMs: Math.max(0, this.t.wallMs - this.t.deviceMs),
    };
  }
}

/** Counters of an interval: b minus a (a taken earlier from the same engine). */
export function statsSince(a: SpeculativeStats | undefined, b: SpeculativeStats): SpeculativeStats {
  if (!a) return b;
  const rounds = b.rounds - a.rounds;
  const committed = b.meanAcceptedLength * b.rounds - a.meanAcceptedLength * a.rounds;
  const d = (k: "iterations" | "wallMs" | "deviceMs" | "hostMs" | "profiledIterations" | "draftMs" | "verifyMs" | "acceptMs" | "draftedTokens" | "acceptedTokens") => b[k] - a[k];
  return {
    rounds,
    iterations: d("iterations"),
    meanAcceptedLength: rounds ? committed / rounds : 0,
    draftedTokens: d("draftedTokens"),
    acceptedTokens: d("acceptedTokens"),
    acceptanceByPosition: b.acceptanceByPosition.map((x, i) => (rounds ? (x * b.rounds - (a.acceptanceByPosition[i] ?? 0) * a.rounds) / rounds : 0)),
    wallMs: d("wallMs"), deviceMs: d("deviceMs"), hostMs: d("hostMs"),
    profiledIterations: d("profiledIterations"), draftMs: d("draftMs"), verifyMs: d("verifyMs"), acceptMs: d("acceptMs"),
    choices: b.choices,
  };
}
