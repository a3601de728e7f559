// Counter-based random numbers shared by the CPU reference and the CUDA kernels, so a request's
// draws depend only on (seed, counter, lane) and not on batching or thread layout.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define E3_HD __host__ __device__ __forceinline__
#else
#define E3_HD inline
#endif

namespace e3 {

E3_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 24 bits, exactly representable in float.
E3_HD float uniform01(uint64_t seed, uint64_t counter, uint32_t lane) {
  uint64_t h = splitmix64(splitmix64(seed ^ 0x5851F42D4C957F2Dull) + counter * 0x2545F4914F6CDD1Dull + lane);
  return float(h >> 40) * (1.0f / 16777216.0f);
}

// Standard normal from (seed, index) by Box–Muller.
E3_HD float normal01(uint64_t seed, uint64_t index) {
  float u1 = uniform01(seed, index, 1) + 1.0f / 33554432.0f, u2 = uniform01(seed, index, 2);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

}  // namespace e3
