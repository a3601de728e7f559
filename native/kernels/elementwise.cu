#include "kernels/elementwise.cuh"
#include "kernels/device.cuh"

namespace e3k {

__global__ void embedding_kernel(const int32_t* ids, const bf16* table, bf16* out, int hidden) {
  pdl_begin();
  const Bf16x8* src = reinterpret_cast<const Bf16x8*>(table + int64_t(ids[blockIdx.x]) * hidden);
  Bf16x8* dst = reinterpret_cast<Bf16x8*>(out + int64_t(blockIdx.x) * hidden);
  for (int i = threadIdx.x; i < hidden / 8; i += blockDim.x) dst[i] = src[i];
}

__global__ void embedding_kernel_scalar(const int32_t* ids, const bf16* table, bf16* out, int hidden) {
  pdl_begin();
  const bf16* src = table + int64_t(ids[blockIdx.x]) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[int64_t(blockIdx.x) * hidden + i] = src[i];
}

cudaError_t embedding(const int32_t* ids, const bf16* table, bf16* out, int tokens, int hidden, cudaStream_t s) {
  if (hidden % 8 == 0) return launch(embedding_kernel, dim3(tokens), dim3(128), 0, s, ids, table, out, hidden);
  return launch(embedding_kernel_scalar, dim3(tokens), dim3(128), 0, s, ids, table, out, hidden);
}

__global__ void silu_mul_kernel(const bf16* gate_up, bf16* out, int inter) {
  pdl_begin();
  int64_t t = blockIdx.y;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < inter; i += gridDim.x * blockDim.x) {
    float g = __bfloat162float(gate_up[t * 2 * inter + i]), u = __bfloat162float(gate_up[t * 2 * inter + inter + i]);
    out[t * inter + i] = __float2bfloat16(silu_times(g, u));
  }
}

cudaError_t silu_mul(const bf16* gate_up, bf16* out, int tokens, int inter, cudaStream_t s) {
  dim3 grid(ceil_div(inter, 256 * 4), tokens);
  return launch(silu_mul_kernel, grid, dim3(256), 0, s, gate_up, out, inter);
}

// Row copy with indices on either side: gather (src_rows) or scatter (dst_rows).
__global__ void copy_rows_kernel(const char* x, const int32_t* src_rows, const int32_t* dst_rows, char* out, int64_t row_bytes) {
  pdl_begin();
  const char* src = x + int64_t(src_rows ? src_rows[blockIdx.x] : blockIdx.x) * row_bytes;
  char* dst = out + int64_t(dst_rows ? dst_rows[blockIdx.x] : blockIdx.x) * row_bytes;
  if (row_bytes % 16 == 0) {
    for (int64_t i = threadIdx.x; i < row_bytes / 16; i += blockDim.x)
      reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(src)[i];
  } else {
    for (int64_t i = threadIdx.x; i < row_bytes; i += blockDim.x) dst[i] = src[i];
  }
}

cudaError_t gather_rows(const void* x, const int32_t* rows, void* out, int n, int64_t row_bytes, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  return launch(copy_rows_kernel, dim3(n), dim3(128), 0, s, static_cast<const char*>(x), rows, nullptr, static_cast<char*>(out), row_bytes);
}

cudaError_t scatter_rows(const void* x, const int32_t* rows, void* out, int n, int64_t row_bytes, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  return launch(copy_rows_kernel, dim3(n), dim3(128), 0, s, static_cast<const char*>(x), nullptr, rows, static_cast<char*>(out), row_bytes);
}

cudaError_t copy_columns(const void* src, void* dst, int rows, int64_t cols, int64_t dst_cols, int64_t col, int es,
                         cudaStream_t s) {
  if (rows == 0) return cudaSuccess;
  return cudaMemcpy2DAsync(static_cast<char*>(dst) + col * es, size_t(dst_cols * es), src, size_t(cols * es),
                           size_t(cols * es), size_t(rows), cudaMemcpyDeviceToDevice, s);
}

}  // namespace e3k
