// Greedy and stochastic sampling over f32 logits rows, one block per row: temperature, top-k and
// top-p thresholds found by bisection over the values (no sort), then one inverse-CDF draw over the
// kept tokens in id order with the counter-based uniform of runtime/rng.h.
#pragma once
#include <cuda_runtime.h>

#include "kernels/types.h"
#include "runtime/sampling_params.h"

namespace e3k {

// Greedy rows: argmax with the lowest index on ties, each row split over many blocks that meet
// in a 64-bit atomic max of (value, −index); keys is workspace of `rows` u64.
cudaError_t argmax(const float* logits, int32_t* out, unsigned long long* keys, int rows, int vocab, cudaStream_t s);

cudaError_t sample(const float* logits, const e3::SamplingParams* params, int32_t* out, int rows, int vocab,
                   cudaStream_t s);

}  // namespace e3k
