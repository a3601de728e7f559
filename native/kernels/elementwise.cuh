// Embedding gather, SwiGLU, row gather and column copy: the small memory-bound ops.
#pragma once
#include <cuda_runtime.h>

#include "kernels/types.h"

namespace e3k {

// out[t] = table[ids[t]] (ids validated on the host).
cudaError_t embedding(const int32_t* ids, const bf16* table, bf16* out, int tokens, int hidden, cudaStream_t s);
// out[t, i] = bf16(bf16(silu(g)) * u) with g = gate_up[t, i], u = gate_up[t, I + i]
cudaError_t silu_mul(const bf16* gate_up, bf16* out, int tokens, int inter, cudaStream_t s);
// out[r] = x[rows[r]], rows of row_bytes bytes
cudaError_t gather_rows(const void* x, const int32_t* rows, void* out, int n, int64_t row_bytes, cudaStream_t s);
// out[rows[r]] = x[r], rows of row_bytes bytes
cudaError_t scatter_rows(const void* x, const int32_t* rows, void* out, int n, int64_t row_bytes, cudaStream_t s);
// dst[r, col:col+cols] = src[r, :], element size es bytes
cudaError_t copy_columns(const void* src, void* dst, int rows, int64_t cols, int64_t dst_cols, int64_t col, int es,
                         cudaStream_t s);

}  // namespace e3k
