// RoPE device helpers shared by qkv_rope_store and decode attention's fused rotation: the same
// angles and the same rounding (transformers'), so that both write the same bits.
#pragma once
#include "kernels/device.cuh"
#include "kernels/rope.cuh"

namespace e3k {

// cos and sin of frequency j at position `pos`, rounded to bf16 as transformers does.
__device__ __forceinline__ void rope_angle(const QkvRopeArgs& a, float pos, int j, float& cs, float& sn) {
  float inv_freq = a.inv_freq ? a.inv_freq[j] : 1.0f / powf(a.theta, float(2 * j) / float(a.rotary_dim));
  float s, c;
  sincosf(pos * inv_freq, &s, &c);
  cs = rbf(c * a.scale);
  sn = rbf(s * a.scale);
}

// Qwen3's per-head RMSNorm of one value, given the head's 1 / rms.
__device__ __forceinline__ float head_norm(float v, float inv, const bf16* w, int i) {
  return rbf(__bfloat162float(w[i]) * rbf(v * inv));
}

// Rotate-half RoPE of the pair (x[j], x[j + rotary_dim / 2]).
__device__ __forceinline__ void rotate_pair(float& lo, float& hi, float cs, float sn) {
  const float l = lo, h = hi;
  lo = rbf(l * cs) + rbf(-h * sn);
  hi = rbf(h * cs) + rbf(l * sn);
}

// One head held by a warp, lane l holding elements l + 32·e (E = head_dim / 32): the optional norm,
// then full-width rotation (element x pairs with x + head_dim / 2, which the same lane holds), by
// the angles of frequencies j = l + 32·e, e < E / 2 (rope_angle).
template <int E>
__device__ __forceinline__ void norm_rope_lanes(float (&h)[E], const bf16* norm, float eps, const float (&cos_t)[E / 2],
                                                const float (&sin_t)[E / 2]) {
  const int lane = threadIdx.x & 31;
  if (norm) {
    float ss = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) ss += h[e] * h[e];
    const float inv = rsqrtf(warp_sum(ss) / float(E * 32) + eps);
#pragma unroll
    for (int e = 0; e < E; ++e) h[e] = head_norm(h[e], inv, norm, lane + 32 * e);
  }
#pragma unroll
  for (int e = 0; e < E / 2; ++e) rotate_pair(h[e], h[e + E / 2], cos_t[e], sin_t[e]);
}

}  // namespace e3k
