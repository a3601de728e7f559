/**
 * Wall time per kind of iteration, so that a bench can show where an engine's time went (a
 * speculative engine's rounds, plain steps, prefills and draft catch-ups against the baseline's
 * steps); iterations that recorded a graph are counted apart as well, since they are many times slower.
 */
export type IterationKind = "decode" | "mixed" | "prefill" | "round" | "catchUp";

export interface KindTime {
  count: number;
  /** Tokens the iterations ran: new target tokens (the draft's, for catchUp; committed, for rounds). */
  tokens: number;
  ms: number;
  /** Of these, the iterations that recorded a new graph, and their time. */
  captures: number;
  captureMs: number;
}

export type IterationTimesSnapshot = Partial<Record<IterationKind, KindTime>>;

export class IterationTimes {
  private readonly kinds: IterationTimesSnapshot = {};

  add(kind: IterationKind, tokens: number, ms: number, captured: boolean): void {
    const k = (this.kinds[kind] ??= { count: 0, tokens: 0, ms: 0, captures: 0, captureMs: 0 });
    k.count++;
    k.tokens += tokens;
    k.ms += ms;
    if (!captured) return;
    k.captures++;
    k.captureMs += ms;
  }

  snapshot(): IterationTimesSnapshot {
    return structuredClone(this.kinds);
  }
}

/** The iterations of an interval: b minus a (a taken earlier from the same engine). */
export function timesSince(a: IterationTimesSnapshot, b: IterationTimesSnapshot): IterationTimesSnapshot {
  const out: IterationTimesSnapshot = {};
  for (const [kind, t] of Object.entries(b) as Array<[IterationKind, KindTime]>) {
    const s = a[kind] ?? { count: 0, tokens: 0, ms: 0, captures: 0, captureMs: 0 };
    if (t.count === s.count) continue;
    out[kind] = {
      count: t.count - s.count, tokens: t.tokens - s.tokens, ms: t.ms - s.ms,
      captures: t.captures - s.captures, captureMs: t.captureMs - s.captureMs,
    };
  }
  return out;
}
