/**
 * The draft catching up after plain steps, two ways on one backend: sequence 0 from the features
 * the steps kept (storedFeatures), sequence 1 with the target run again over the same tokens.
 * Both prefill the same prompt with the draft, then take greedy steps across a page boundary,
 * alternately plain steps and speculative prefill steps they ride along in without their draft
 * keeping state; the draft's candidates are read before and after.
 */
import { PageAllocator } from "../../lib/batch/page-allocator.js";
import { GREEDY, Sequence } from "../../lib/batch/sequence.js";
import { buildSpecPrefill, buildStep } from "../../lib/batch/step-plan.js";
import type { TargetModel } from "../../lib/model/target.js";

type Candidates = ReturnType<TargetModel["draftCandidates"]>;

export async function runCatchUp(model: TargetModel, prompt: number[], plainSteps: number, pageSize: number) {
  const pages = new PageAllocator(model.options.numPages);
  const perSeq = Math.ceil((prompt.length + plainSteps + 1) / pageSize);
  const seqs = [0, 1].map((slot) => {
    const s = new Sequence(slot, prompt.length, [...prompt], 64, GREEDY, new Set());
    s.pages = pages.alloc(perSeq)!;
    s.slot = slot;
    return s;
  });
  for (const s of seqs) {
    const res = await model.prefillSpeculative(buildSpecPrefill([{ seq: s, count: prompt.length, samples: true }], () => true));
    s.tokens.push(res.tokens![0]);
    s.cached = s.drafted = prompt.length;
  }
  const before: Candidates = model.draftCandidates(0);
  for (let i = 0; i < plainSteps; i++)
    for (const s of seqs) {
      const entry = { seq: s, count: 1, samples: true };
      const res = i % 2 ? await model.prefillSpeculative(buildSpecPrefill([entry], () => false)) : await model.step(buildStep([entry]));
      s.tokens.push(res.tokens![0]);
      s.cached++;
    }
  const catchUp = (s: Sequence) => buildSpecPrefill([{ seq: s, count: s.cached - s.drafted, start: s.drafted, samples: false }], () => true);
  await model.prefillSpeculative({ ...catchUp(seqs[0]), storedFeatures: true });
  await model.prefillSpeculative(catchUp(seqs[1]));
  return { before, stored: model.draftCandidates(0), rerun: model.draftCandidates(1), seqs };
}
