// Module registration: the only N-API entry of the addon.
#include <napi.h>

#include "addon/entry_points.h"
#include "addon/tensor_wrap.h"

namespace e3js {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  TensorWrap::Init(env, exports);
  InitModel(env, exports);
  InitOps(env, exports);
  exports.Set("loadTensors", Napi::Function::New(env, LoadTensors, "loadTensors"));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("cudaStatus", Napi::Function::New(env, CudaStatus, "cudaStatus"));
  exports.Set("measureCopyBandwidth", Napi::Function::New(env, MeasureCopyBandwidth, "measureCopyBandwidth"));
  exports.Set("measureGemmFlops", Napi::Function::New(env, MeasureGemmFlops, "measureGemmFlops"));
  return exports;
}

NODE_API_MODULE(eagle3, Init)

}  // namespace e3js
