// Softmax top-k of logits rows, ids mapped through an optional draft → target vocabulary table.
#pragma once
#include "kernels/types.h"

namespace e3k {

constexpr int kTopkMax = 64;

// Rows are split over several blocks each (k ≤ 16, at most this many rows): the launch then needs
// topk_workspace_floats() floats of `partials` and `rows` zeroed `arrivals`, which it leaves zeroed.
constexpr int kTopkMaxSplitRows = 4096;
size_t topk_workspace_floats(int rows, int vocab, int k);

// probs[r, j], ids[r, j]: the j-th largest softmax probability of row r (ties: lower id first).
cudaError_t topk_softmax(const float* logits, int rows, int vocab, int k, const int32_t* map, float* probs,
                         int32_t* ids, float* partials, unsigned* arrivals, cudaStream_t s);

}  // namespace e3k
