// Per-row sampling parameters, shared by the CPU reference and the CUDA kernel (uploaded raw).
#pragma once
#include <cstdint>

namespace e3 {

// temperature <= 0 means greedy (argmax, lowest index on ties).
struct SamplingParams {
  float temperature;
  int32_t top_k;         // <= 0: no top-k
  float top_p;           // >= 1: no top-p
  int32_t pad;
  uint64_t seed;
  uint64_t counter;      // position of this draw in the request's random stream
};
static_assert(sizeof(SamplingParams) == 32, "SamplingParams is uploaded as raw bytes");

}  // namespace e3
