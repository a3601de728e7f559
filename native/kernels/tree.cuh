// Draft-tree ops of a speculative round: one block per sequence, small arrays in shared memory.
// Semantics and tie-breaking are those of native/cpu/tree.cc, which the tests compare against.
#pragma once
#include <cuda_runtime.h>

#include "kernels/types.h"
#include "runtime/sampling_params.h"

namespace e3k {

// Candidate arrays of B sequences, C = K + (S − 1)·K² each (see e3::TreeState).
struct TreeArgs {
  int steps, topk, candidates;
  float* score;
  int32_t* token;
  int32_t* parent;
  int64_t* mask;
  int32_t* live;
};

// Rows copied by the parent rows tree_expand computes (src row parent_rows[i] into dst row i); row_bytes a multiple of 16.
struct RowCopy {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t row_bytes = 0;
};
cudaError_t tree_expand(TreeArgs t, int batch, int level, const float* probs, const int32_t* ids, int width,
                        int32_t* tokens, int64_t* mask, int32_t* parent_rows, const RowCopy& states, cudaStream_t s);
cudaError_t tree_build(TreeArgs t, int batch, int n, const int32_t* roots, const int32_t* committed, int32_t* tokens,
                       int32_t* positions, int64_t* mask, int32_t* parent, cudaStream_t s);
cudaError_t tree_accept_greedy(int batch, int n, int steps, const int32_t* tokens, const int32_t* parent,
                               const int32_t* argmax, int32_t* path, int32_t* accepted, int32_t* bonus, cudaStream_t s);
cudaError_t tree_accept_sampled(int batch, int n, int steps, const int32_t* tokens, const int32_t* parent,
                                const float* logits, int vocab, const e3::SamplingParams* params, int32_t* path,
                                int32_t* accepted, int32_t* bonus, cudaStream_t s);
cudaError_t tree_commit(int batch, int n, int steps, const int32_t* tokens, const int32_t* path, const int32_t* accepted,
                        const int32_t* bonus, int32_t* out_tokens, int32_t* feature_rows, int32_t* last_rows,
                        cudaStream_t s);
cudaError_t tree_advance(int batch, const int32_t* committed, const int32_t* accepted, const int32_t* bonus,
                         int32_t* next_committed, int32_t* next_roots, cudaStream_t s);
// Steps' cache layouts in one launch (e3::Ops::step_layouts), at most kMaxStepLayouts of them.
constexpr int kMaxStepLayouts = 16;
struct StepLayoutArgs {
  int q, first, pos_base, pos_step;
  int32_t* positions;  // or null
  int32_t* kv_len;
  int32_t* slots;
};
struct StepLayouts {
  int count = 0;
  StepLayoutArgs step[kMaxStepLayouts];
};
cudaError_t step_layouts(int batch, const int32_t* committed, const int32_t* page_table, int pages, int page_size,
                         const StepLayouts& steps, cudaStream_t s);
// planes = 2 · layers of `slots` rows of row_bytes (a multiple of 16) each.
cudaError_t kv_compact(void* pool, int planes, int64_t slots, int64_t row_bytes, const int32_t* page_table, int pages,
                       int page_size, int batch, int steps, const int32_t* committed, const int32_t* path,
                       const int32_t* accepted, cudaStream_t s);

}  // namespace e3k
