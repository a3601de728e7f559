// Attention over the paged KV cache for any mix of prefill chunks, decode tokens and speculative
// trees: every query token sees its sequence's cached prefix plus the new tokens its mask allows
// (causal by default, or a tree mask: bit j = sees new token j). GQA heads of one KV head are
// packed into the same tile so each K/V element is loaded once per group.
#pragma once
#include <cuda_runtime.h>

#include "kernels/rope.cuh"
#include "kernels/types.h"

namespace e3k {

struct AttentionArgs {
  const bf16* q;             // [T, nh, d]
  const bf16* k_cache;       // [slots, nkv, d]
  const bf16* v_cache;
  const int32_t* q_start;    // [S+1]
  const int32_t* kv_len;     // [S]
  const int32_t* page_table; // [S, max_pages]
  const int64_t* tree_mask;  // [T] or null (causal)
  const int32_t* tree_base;  // [S] context index of mask bit 0; null = the first new token
  bf16* out;                 // [T, nh, d]
  int num_seqs, tokens, heads, kv_heads, head_dim, page_size, max_pages;
  int max_q_len, max_kv_len; // host-side bounds for the launch
  float scale;
  int sm_count;
  float* workspace;          // split-KV partials; attention_workspace_floats() of them
  int max_splits;            // 0: as many as fill the GPU; else at most this many (timings)
};

// Floats of workspace the launch needs for these bounds (0 when it needs none).
size_t attention_workspace_floats(const AttentionArgs& a);
// At decode shapes the cached context below the new tokens is read before the kernel ahead of this
// one is done (programmatic launch): that kernel may write the new tokens' K/V, nothing older.
cudaError_t attention(const AttentionArgs& a, cudaStream_t s);

// qkv_rope_store(r) then attention(a), as one decode kernel, where rope_attention_fits: decode
// shapes (a sequence's new rows fit one 16-row tile), head_dim 64 or 128, full-width rotation.
bool rope_attention_fits(const AttentionArgs& a, const QkvRopeArgs& r);
cudaError_t rope_attention(const AttentionArgs& a, const QkvRopeArgs& r, cudaStream_t s);

}  // namespace e3k
