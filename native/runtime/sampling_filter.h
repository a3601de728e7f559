// The target distribution a sampled token follows, as transformers filters it: temperature, then
// top-k (ties with the k-th kept), then top-p (the most likely tokens until their mass reaches
// top_p, at least one), renormalised. Shared by the CPU sampler and speculative acceptance.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/sampling_params.h"

namespace e3 {

// probs[v] for v < vocab (0 for filtered tokens); returns probs.data(). temperature must be > 0.
const float* filtered_probs(const float* logits, int64_t vocab, const SamplingParams& sp, std::vector<float>& probs);

}  // namespace e3
