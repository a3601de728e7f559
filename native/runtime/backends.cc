#include "cpu/cpu_ops.h"
#include "runtime/cuda_util.h"
#include "runtime/error.h"
#include "runtime/ops.h"

#if EAGLE3_WITH_CUDA
#include "runtime/cuda/cuda_ops.h"
#endif

namespace e3 {

std::unique_ptr<Ops> make_ops(Device d) {
  if (d == Device::CPU) return std::make_unique<CpuOps>();
#if EAGLE3_WITH_CUDA
  return std::make_unique<CudaOps>();
#else
  require_cuda_device();  // throws: this build has no CUDA
  return nullptr;
#endif
}

}  // namespace e3
