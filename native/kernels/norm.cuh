// RMSNorm with transformers' rounding: y = bf16(x · rsqrt(mean(x²) + eps)), out = bf16(w · y).
#pragma once
#include <cuda_runtime.h>

#include "kernels/types.h"

namespace e3k {

// w holds `groups` weight rows of n; row r of x uses w[r % groups].
cudaError_t rmsnorm(const bf16* x, const bf16* w, bf16* out, int rows, int n, int groups, float eps, cudaStream_t s);
// residual = bf16(residual + x); out = rmsnorm(residual)
cudaError_t add_rmsnorm(bf16* residual, const bf16* x, const bf16* w, bf16* out, int rows, int n, float eps,
                        cudaStream_t s);

}  // namespace e3k
