// measureCopyBandwidth(bytes, reps) and measureGemmFlops(m, n, k, reps): the device's ceilings.
#include "addon/entry_points.h"
#include "addon/js_error.h"
#include "runtime/cuda_util.h"
#include "runtime/error.h"
#if EAGLE3_WITH_CUDA
#include "runtime/cuda/microbench.h"
#endif

namespace e3js {

static double num(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) e3::fail(e3::Code::InvalidArgument, "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

Napi::Value MeasureCopyBandwidth(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    e3::require_cuda_device();
#if EAGLE3_WITH_CUDA
    return Napi::Value(Napi::Number::New(info.Env(), e3::measure_copy_bandwidth(size_t(num(info, 0)), int(num(info, 1)))));
#else
    return info.Env().Undefined();
#endif
  });
}

Napi::Value MeasureGemmFlops(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    e3::require_cuda_device();
#if EAGLE3_WITH_CUDA
    return Napi::Value(Napi::Number::New(
        info.Env(), e3::measure_gemm_flops(int(num(info, 0)), int(num(info, 1)), int(num(info, 2)), int(num(info, 3)))));
#else
    return info.Env().Undefined();
#endif
  });
}

}  // namespace e3js
