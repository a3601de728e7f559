/** eagle3 bench's table: the policy column shows each choice's rate with joins, the leader in bold. */
import { describe, expect, it } from "vitest";
import type { SpecBenchRow } from "../../lib/bench/spec-bench.js";
import { speculativeTable } from "../../lib/cli/bench.js";

const row: SpecBenchRow = {
  dataset: "mtbench", batch: 32, requests: 256, speculation: "auto",
  baselineTokensPerSecond: 70000, baselineSpread: 0.2, eagleTokensPerSecond: 69000, speedup: 0.99, speedupRange: [0.95, 1.02],
  meanAcceptedLength: 1, acceptanceByPosition: [0.5], idealSpeedup: 0.4, ofIdeal: null,
  phases: { iterations: 1, wallMs: 1, deviceMs: 0.9, hostMs: 0.1, draftMs: 0.2, verifyMs: 0.4, acceptMs: 0.1, baselineStepMs: 0.44 },
  iterationTimes: { baseline: { decode: { count: 10, tokens: 320, ms: 4.4, captures: 0, captureMs: 0 } }, eagle: {} },
  choices: [
    { bucket: "32g", choice: "plain", tokensPerSeqMs: 2.2, samples: 900, best: true, recent: [2.2], joinShare: 0.03, effectiveRate: 2.15 },
    { bucket: "32g", choice: "tree 4/2/6", tokensPerSeqMs: 2.6, samples: 40, best: false, recent: [2.6], joinShare: 0.28, effectiveRate: 2.04 },
    { bucket: "32g", choice: "tree 3/1/4", tokensPerSeqMs: 1.1, samples: 2, best: false, recent: [1.1], joinShare: 0, effectiveRate: 1.1 },
  ],
};

describe("speculativeTable", () => {
  it("shows each choice's rate over its joins too, its share of time in joins, and the leader in bold", () => {
    const line = speculativeTable([row]).split("\n").find((l) => l.startsWith("| mtbench | 32 |"))!;
    expect(line).toContain("**plain 2.150** (3%), tree 4/2/6 2.040 (28%), tree 3/1/4 1.100 |");
  });
});
