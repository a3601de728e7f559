/**
 * Steps launched before the previous step's tokens are back (NativeStep.feedback, CPU backend):
 * a fed step equals the same step given its tokens, calls run in the order they were made, bad
 * feedback is refused, and the engine's pipelined decoding (sampled too) draws what unpipelined
 * steps draw.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildStep } from "../../lib/batch/step-plan.js";
import { Sequence } from "../../lib/batch/sequence.js";
import { Engine } from "../../lib/engine.js";
import { TargetModel } from "../../lib/model/target.js";
import { FIXTURES } from "../helpers/golden.js";

const tiny = join(FIXTURES, "qwen3-tiny");
const SAMPLED = { temperature: 1, topK: 40, topP: 0.9, seed: 11 };

async function load() {
  const model = await TargetModel.load(tiny, { device: "cpu", maxStepTokens: 64, numPages: 8, pageSize: 16 });
  return Object.assign(model, { [Symbol.dispose]: () => model.dispose() });
}

function sequences(prompts: number[][]) {
  return prompts.map((p, i) => {
    const s = new Sequence(i, p.length, p, 64, SAMPLED, new Set());
    s.pages = [2 * i, 2 * i + 1];
    return s;
  });
}

describe("steps fed on the device", () => {
  it("a step fed the previous step's draws equals the step given them, launched before they are back", async () => {
    const prompts = [[3, 4, 5, 6, 7], [9, 8, 7]];
    using explicit = await load();
    using fed = await load();
    // Given: prefill (samples each prompt's next token), then a decode step of those tokens.
    const a = sequences(prompts);
    const first = await explicit.step(buildStep(a.map((seq) => ({ seq, count: seq.pending, samples: true }))));
    a.forEach((s, i) => (s.cached = s.tokens.length, s.tokens.push(first.tokens![i]), s.generated++));
    const second = await explicit.step({ ...buildStep(a.map((seq) => ({ seq, count: 1, samples: true }))), wantLogits: true });
    // Fed: the decode step is launched before the prefill's draws are read.
    const b = sequences(prompts);
    const pending = fed.step(buildStep(b.map((seq) => ({ seq, count: seq.pending, samples: true }))));
    // A fed token sits one past `cached` (where a decode step in flight leaves it): the prompt's end.
    b.forEach((s) => (s.cached = s.tokens.length - 1));
    const ahead = fed.step({ ...buildStep(b.map((seq, i) => ({ seq, count: 1, samples: true, fedFrom: i }))), wantLogits: true });
    const [r1, r2] = await Promise.all([pending, ahead]);
    expect(Array.from(r1.tokens!)).toEqual(Array.from(first.tokens!));
    expect(Array.from(r2.tokens!)).toEqual(Array.from(second.tokens!));
    expect(r2.logits).toEqual(second.logits);
  });

  it("refuses feedback with no sampled step before it, or from a row that step did not sample", async () => {
    using model = await load();
    const [s] = sequences([[1, 2, 3]]);
    const fedStep = () => buildStep([{ seq: s, count: 1, samples: true, fedFrom: 0 }]);
    await expect(model.step(fedStep())).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/previous call/) });
    await model.step(buildStep([{ seq: s, count: 3, samples: true }]));
    s.cached = 2;
    const step = fedStep();
    step.feedback = Int32Array.of(1);
    await expect(model.step(step)).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/feedback row 1/) });
  });

  it("the engine's pipelined sampled decoding draws what unpipelined steps draw", async () => {
    const prompt = [5, 6, 7, 8];
    await using engine = await Engine.load({ model: tiny, device: "cpu", maxContext: 64 });
    const got = await engine.complete({ tokens: prompt }, { maxTokens: 12, ignoreEos: true, ...SAMPLED });
    using model = await load();
    const [s] = sequences([prompt]);
    while (s.generated < 12) {
      const r = await model.step(buildStep([{ seq: s, count: s.pending, samples: true }]));
      s.cached = s.tokens.length;
      s.tokens.push(r.tokens![0]);
      s.generated++;
    }
    expect(got.tokens).toEqual(s.tokens.slice(prompt.length));
  });
});
