// Products out[M, N] = x[M, K] · W[N, K]ᵀ (+ bias) for 2 ≤ M ≤ 64 rows (decode batches, tree
// verification) on tensor cores: each weight element is read once and multiplied by every row,
// so the product stays bound by the weight read where cuBLASLt's tiles are not. Splits K over
// blocks when N alone gives too few; the last block of a tile reduces the splits.
#pragma once
#include "kernels/types.h"

namespace e3k {

constexpr int kSkinnyMaxM = 64;

struct SkinnyPlan {
  int splits;          // blocks along K per output tile
  size_t partials;     // floats of workspace: splits · M · N when splits > 1, else 0
  int tiles;           // output tiles (their counters: ints of workspace, zero between calls)
};

// K must be a multiple of 32 and M in [1, kSkinnyMaxM].
bool skinny_fits(int m, int k);
SkinnyPlan skinny_plan(int m, int n, int k, int sm_count);

// out is bf16 (out_f32 null) or f32 (out null). partials and counters as the plan says; the
// counters must be zero before the first call and are left zero.
cudaError_t skinny_gemm(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                        const SkinnyPlan& plan, float* partials, int* counters, cudaStream_t s);

}  // namespace e3k
