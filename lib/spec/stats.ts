/** Speculative decoding counters: accepted lengths, acceptance per draft position, phase times. */
export interface SpeculativeStats {
  rounds: number;
  /** Tokens committed per round per sequence (accepted drafts + the bonus), averaged. */
  meanAcceptedLength: number;
  draftedTokens: number;
  acceptedTokens: number;
  /** Share of rounds whose path reached draft position i + 1. */
  acceptanceByPosition: number[];
  draftMs: number;
  verifyMs: number;
  acceptMs: number;
  /** Wall time of rounds not spent in the native phases (planning, N-API, bookkeeping). */
  hostMs: number;
}

export class SpeculativeCounters {
  private rounds = 0;
  private committed = 0;
  private drafted = 0;
  private readonly reached: number[] = [];
  private times = { draftMs: 0, verifyMs: 0, acceptMs: 0, hostMs: 0 };

  /** One sequence's outcome in one round: it committed `count` tokens from `drafted` drafts. */
  record(count: number, drafted: number): void {
    this.rounds++;
    this.committed += count;
    this.drafted += drafted;
    for (let i = 0; i < count - 1; i++) this.reached[i] = (this.reached[i] ?? 0) + 1;
  }

  time(t: { draftMs: number; verifyMs: number; acceptMs: number; wallMs: number }): void {
    this.times.draftMs += t.draftMs;
    this.times.verifyMs += t.verifyMs;
    this.times.acceptMs += t.acceptMs;
    this.times.hostMs += Math.max(0, t.wallMs - t.draftMs - t.verifyMs - t.acceptMs);
  }

  snapshot(): SpeculativeStats {
    return {
      rounds: this.rounds,
      meanAcceptedLength: this.rounds ? this.committed / this.rounds : 0,
      draftedTokens: this.drafted,
      acceptedTokens: this.committed - this.rounds,
      acceptanceByPosition: this.reached.map((n) => n / Math.max(1, this.rounds)),
      ...this.times,
    };
  }
}
