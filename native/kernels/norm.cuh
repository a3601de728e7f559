// RMSNorm with transformers' rounding: y = bf16(x · rsqrt(mean(x²) + eps)), out = bf16(w · y).
#pragma once
#include <cuda_runtime.h>

#include "kernels/types.h"

namespace e3k {

// Where a plain rmsnorm reads and writes: row r from x[in_rows[r]] (a gather, such as an embedding
// lookup) where given, else x[r]; into out + r · out_ld (0: n), so that out may be a column range
// of wider rows (one half of a concatenation). No separate gather or column copy then runs.
struct NormRows {
  const int32_t* in_rows = nullptr;
  int64_t out_ld = 0;
};

// w holds `groups` weight rows of n; row r of x uses w[r % groups] (groups > 1: no in_rows).
cudaError_t rmsnorm(const bf16* x, const bf16* w, bf16* out, int rows, int n, int groups, float eps, const NormRows& io,
                    cudaStream_t s);
// Where add_rmsnorm also writes the new residual (a target layer's output, kept as a draft
// feature): row r goes to dst[(rows ? rows[r] : r) · stride + col[j]] for each of the `cols`
// column offsets, so that no separate copy or scatter runs after the norm.
constexpr int kMaxCaptureCols = 3;
struct RowCapture {
  bf16* dst = nullptr;
  const int32_t* rows = nullptr;
  int64_t stride = 0;
  int cols = 0;
  int64_t col[kMaxCaptureCols] = {};
};

// residual = bf16(residual + x); out = rmsnorm(residual); the residual captured as `cap` says
cudaError_t add_rmsnorm(bf16* residual, const bf16* x, const bf16* w, bf16* out, int rows, int n, float eps,
                        const RowCapture& cap, cudaStream_t s);

}  // namespace e3k
