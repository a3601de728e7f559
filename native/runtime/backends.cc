#include "runtime/cuda_util.h"
#include "runtime/error.h"
#include "runtime/ops.h"

namespace e3 {

#if !EAGLE3_WITH_CUDA
Ops& cuda_ops() {
  require_cuda_device();  // always throws in a CPU-only build
  fail(Code::NoCudaDevice, "no CUDA backend");
}
#endif

}  // namespace e3
