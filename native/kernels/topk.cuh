// Softmax top-k of logits rows, ids mapped through an optional draft → target vocabulary table.
#pragma once
#include "kernels/types.h"

namespace e3k {

constexpr int kTopkMax = 64;

// probs[r, j], ids[r, j]: the j-th largest softmax probability of row r (ties: lower id first).
cudaError_t topk_softmax(const float* logits, int rows, int vocab, int k, const int32_t* map, float* probs,
                         int32_t* ids, cudaStream_t s);

}  // namespace e3k
