// Products out[M, N] = x[M, K] · W[N, K]ᵀ (+ bias) for 2 ≤ M ≤ 64 rows (decode batches, tree
// verification) on tensor cores: each weight element is read once and multiplied by every row,
// so the product stays bound by the weight read where cuBLASLt's tiles are not. A block owns 32
// output rows; its warps split K and add their sums in shared memory.
#pragma once
#include "kernels/types.h"

namespace e3k {

constexpr int kSkinnyMaxM = 64;

// K must be a multiple of 32 and M in [1, kSkinnyMaxM].
bool skinny_fits(int m, int k);

// out is bf16 (out_f32 null) or f32 (out null).
cudaError_t skinny_gemm(const bf16* x, const bf16* w, const bf16* bias, bf16* out, float* out_f32, int m, int n, int k,
                        cudaStream_t s);

}  // namespace e3k
