// cuBLASLt, loaded at run time (dlopen of libcublasLt.so.13 / .12) so the addon builds and loads
// where cuBLAS is absent. Only the bf16 "x · Wᵀ" product the models need is exposed.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace e3 {

bool cublaslt_available();  // false (and the reason in cublaslt_error()) when it cannot be loaded
const char* cublaslt_error();

// out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N]); out is bf16, or f32 when out_f32.
// Throws ERR_CUDA when cuBLASLt is missing or fails.
void cublaslt_linear(const void* x, const void* w, const void* bias, void* out, bool out_f32, int m, int n, int k,
                     void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace e3
