/** Stop strings found across chunk boundaries: text that could begin one is held back. */
export class StopMatcher {
  private held = "";
  constructor(private readonly stops: string[]) {}

  push(text: string): { text: string; stopped: boolean } {
    if (!this.stops.length) return { text, stopped: false };
    const all = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      const i = all.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.held = "";
      return { text: all.slice(0, cut), stopped: true };
    }
    const keep = Math.max(0, ...this.stops.map((s) => overlap(all, s)));
    this.held = all.slice(all.length - keep);
    return { text: all.slice(0, all.length - keep), stopped: false };
  }

  flush(): string {
    const h = this.held;
    this.held = "";
    return h;
  }
}

/** Length of the longest suffix of `text` that is a proper prefix of `stop`. */
function overlap(text: string, stop: string): number {
  for (let n = Math.min(stop.length - 1, text.length); n > 0; n--) if (text.endsWith(stop.slice(0, n))) return n;
  return 0;
}
