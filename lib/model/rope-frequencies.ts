/**
 * A scaled RoPE as transformers computes it (modeling_rope_utils: linear, llama3, yarn): the inverse
 * frequencies of the rotary dimensions, and the multiplier of cos and sin (yarn's attention factor).
 * The draft runs its RoPE from this table (eagle3-reference.md §1.2: the draft's own RoPE).
 */
import type { DraftRopeScaling } from "./draft-config.js";

export interface ScaledRope {
  /** f32 [rotaryDim / 2] */
  invFreq: Float32Array;
  scale: number;
}

export function scaledRope(theta: number, rotaryDim: number, s: DraftRopeScaling): ScaledRope {
  const half = rotaryDim / 2;
  const base = (i: number) => 1 / theta ** ((2 * i) / rotaryDim);
  const table = (f: (inv: number, i: number) => number) => Float32Array.from({ length: half }, (_, i) => f(base(i), i));
  switch (s.type) {
    case "linear":
      return { invFreq: table((inv) => inv / s.factor), scale: 1 };
    case "llama3": {
      // Wavelengths shorter than original / highFreqFactor keep their frequency, longer than
      // original / lowFreqFactor are slowed by `factor`, and those between blend the two.
      const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      return {
        invFreq: table((inv) => {
          const wavelen = (2 * Math.PI) / inv;
          if (wavelen < highWavelen) return inv;
          if (wavelen > lowWavelen) return inv / s.factor;
          const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
          return (1 - smooth) * (inv / s.factor) + smooth * inv;
        }),
        scale: 1,
      };
    }
    case "yarn": {
      // Dimensions below the correction range extrapolate (keep their frequency), those above it
      // interpolate (slowed by `factor`), with a linear ramp between.
      const correction = (rotations: number) =>
        (rotaryDim * Math.log(s.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
      let low = correction(s.betaFast), high = correction(s.betaSlow);
      if (s.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
      low = Math.max(low, 0);
      high = Math.min(high, rotaryDim - 1);
      if (low === high) high += 0.001;
      return {
        invFreq: table((inv, i) => {
          const extrapolation = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)));
          return (inv / s.factor) * (1 - extrapolation) + inv * extrapolation;
        }),
        scale: s.attentionFactor,
      };
    }
  }
}
