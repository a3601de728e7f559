// Seeded normal fill of bf16 weights directly on the GPU (random-weight presets of real shapes).
#pragma once
#include "kernels/types.h"

namespace e3k {

// out[i] = bf16(mean + std · N(0,1)), N drawn from (seed, i) by Box–Muller over runtime/rng.h.
cudaError_t fill_normal(bf16* out, int64_t n, uint64_t seed, float mean, float std, cudaStream_t s);

}  // namespace e3k
