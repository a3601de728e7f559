#include "runtime/cuda/microbench.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "kernels/random.cuh"
#include "runtime/cuda/cublaslt.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

namespace e3 {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(Code::Cuda, std::string(what) + ": " + cudaGetErrorString(e));
}

// Median milliseconds of `reps` runs of f on `stream`, timed with events after two warm-ups.
template <class F>
double median_ms(cudaStream_t stream, int reps, F&& f) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  f();
  f();
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a, stream);
    f();
    cudaEventRecord(b, stream);
    check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

double measure_copy_bandwidth(size_t bytes, int reps) {
  Tensor src = Tensor::empty(Device::CUDA, DType::BF16, {int64_t(bytes / 2)});
  Tensor dst = Tensor::empty(Device::CUDA, DType::BF16, {int64_t(bytes / 2)});
  check(e3k::fill_normal(src.ptr<e3k::bf16>(), src.numel(), 1, 0, 1, nullptr), "fill");
  double ms = median_ms(nullptr, reps, [&] { cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDeviceToDevice); });
  return 2.0 * double(src.nbytes()) / (ms * 1e-3);
}

double measure_gemm_flops(int m, int n, int k, int reps) {
  Tensor x = Tensor::empty(Device::CUDA, DType::BF16, {m, k});
  Tensor w = Tensor::empty(Device::CUDA, DType::BF16, {n, k});
  Tensor out = Tensor::empty(Device::CUDA, DType::BF16, {m, n});
  Tensor ws = Tensor::empty(Device::CUDA, DType::U8, {32 << 20});
  check(e3k::fill_normal(x.ptr<e3k::bf16>(), x.numel(), 2, 0, 1, nullptr), "fill");
  check(e3k::fill_normal(w.ptr<e3k::bf16>(), w.numel(), 3, 0, 1, nullptr), "fill");
  double ms = median_ms(nullptr, reps, [&] {
    cublaslt_linear(x.data(), w.data(), nullptr, out.data(), false, m, n, k, ws.data(), ws.nbytes(), nullptr);
  });
  return 2.0 * m * n * double(k) / (ms * 1e-3);
}

}  // namespace e3
