#include "runtime/cuda_util.h"

#include "runtime/error.h"

#if EAGLE3_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace e3 {

#if EAGLE3_WITH_CUDA

static void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear sticky-free errors so the next call starts clean
  Code code = err == cudaErrorMemoryAllocation ? Code::OutOfMemory
              : (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) ? Code::NoCudaDevice
                                                                                  : Code::Cuda;
  fail(code, std::string(what) + ": " + cudaGetErrorString(err));
}

bool cuda_compiled() { return true; }

void* cuda_malloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail(Code::OutOfMemory, "cannot allocate " + std::to_string(bytes) + " bytes on the GPU (" +
                                std::to_string(free_b) + " bytes free of " + std::to_string(total_b) + ")");
  }
  check(err, "cudaMalloc");
  return p;
}

void cuda_free(void* p) { cudaFree(p); }  // never throws: called from destructors

void cuda_memcpy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  cudaMemcpyKind k = kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
                     : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                                      : cudaMemcpyDeviceToDevice;
  check(cudaMemcpy(dst, src, bytes, k), "cudaMemcpy");
}

void cuda_synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

CudaStatus cuda_status() {
  CudaStatus st{true, 0, 0, "", {}};
  cudaDriverGetVersion(&st.driver_version);
  cudaRuntimeGetVersion(&st.runtime_version);
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    st.error = st.driver_version == 0 ? "no NVIDIA driver found (libcuda.so.1 missing)"
                                      : std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(err);
    return st;
  }
  if (n == 0) st.error = "the NVIDIA driver reports no CUDA device";
  int current = 0;
  cudaGetDevice(&current);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    GpuInfo g{i, p.name, p.major, p.minor, p.multiProcessorCount, p.totalGlobalMem, 0, size_t(p.l2CacheSize)};
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) g.free_bytes = free_b;
    st.gpus.push_back(g);
  }
  cudaSetDevice(current);
  cudaGetLastError();
  return st;
}

void require_cuda_device() {
  static bool ok = false;
  if (ok) return;
  CudaStatus st = cuda_status();
  E3_CHECK(st.error.empty(), NoCudaDevice, "no usable CUDA device: " + st.error);
  ok = true;
}

#else

static const char* kNoCuda = "this addon was built without CUDA (nvcc was not found at build time)";

bool cuda_compiled() { return false; }
void* cuda_malloc(size_t) { fail(Code::NoCudaDevice, kNoCuda); }
void cuda_free(void*) {}
void cuda_memcpy(void*, const void*, size_t, CopyKind) { fail(Code::NoCudaDevice, kNoCuda); }
void cuda_synchronize() {}
CudaStatus cuda_status() { return CudaStatus{false, 0, 0, kNoCuda, {}}; }
void require_cuda_device() { fail(Code::NoCudaDevice, kNoCuda); }

#endif

}  // namespace e3
