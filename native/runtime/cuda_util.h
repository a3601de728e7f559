// The CUDA runtime as the rest of the native code sees it. In a build without CUDA every call
// fails with ERR_NO_CUDA_DEVICE, so callers need no #ifdefs.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace e3 {

enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };

bool cuda_compiled();  // was this addon built with CUDA kernels
void* cuda_malloc(size_t bytes);
void cuda_free(void* p);
void cuda_memcpy(void* dst, const void* src, size_t bytes, CopyKind kind);
void cuda_synchronize();

struct GpuInfo {
  int index;
  std::string name;
  int cc_major, cc_minor, sm_count;
  size_t total_bytes, free_bytes, l2_bytes;
};

struct CudaStatus {
  bool compiled;
  int driver_version;   // 0 when no driver is installed
  int runtime_version;
  std::string error;    // why no GPU can be used, empty when one can
  std::vector<GpuInfo> gpus;
};
CudaStatus cuda_status();

// Throws ERR_NO_CUDA_DEVICE naming what was looked for unless a usable GPU is present.
void require_cuda_device();

}  // namespace e3
