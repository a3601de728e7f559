// Fused split of the qkv projection: optional per-head RMSNorm (Qwen3 q_norm/k_norm), rotate-half
// RoPE, q written out and k/v written into the paged KV cache at each token's slot.
#pragma once
#include <cuda_runtime.h>

#include "kernels/types.h"

namespace e3k {

struct QkvRopeArgs {
  const bf16* qkv;        // [T, (nh + 2 nkv) d]
  const bf16* q_norm;     // [d] or null
  const bf16* k_norm;     // [d] or null
  const int32_t* positions;
  const int32_t* slots;   // [T] cache slot of each token
  bf16* q_out;            // [T, nh, d]
  bf16* k_cache;          // [slots, nkv, d]
  bf16* v_cache;
  int tokens, heads, kv_heads, head_dim, rotary_dim;
  float eps, theta;
  const float* inv_freq;  // [rotary_dim / 2], or null: theta^(−2j / rotary_dim)
  float scale;            // of cos and sin
};

cudaError_t qkv_rope_store(const QkvRopeArgs& a, cudaStream_t s);

}  // namespace e3k
