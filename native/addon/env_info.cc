// buildInfo() and cudaStatus(): what `eagle3 env` prints.
#include "addon/entry_points.h"
#include "addon/js_error.h"
#include "runtime/cuda_util.h"

namespace e3js {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("cuda", e3::cuda_compiled());
  o.Set("cudaArch", e3::cuda_compiled() ? EAGLE3_CUDA_ARCH : "");
  o.Set("buildType", EAGLE3_BUILD_TYPE);
  o.Set("napiVersion", NAPI_VERSION);
  o.Set("compiler", __VERSION__);
  return o;
}

Napi::Value CudaStatus(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    e3::CudaStatus st = e3::cuda_status();
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("compiled", st.compiled);
    o.Set("driverVersion", st.driver_version);
    o.Set("runtimeVersion", st.runtime_version);
    o.Set("error", st.error.empty() ? env.Null() : Napi::String::New(env, st.error));
    Napi::Array gpus = Napi::Array::New(env, st.gpus.size());
    for (uint32_t i = 0; i < st.gpus.size(); ++i) {
      const e3::GpuInfo& g = st.gpus[i];
      Napi::Object x = Napi::Object::New(env);
      x.Set("index", g.index);
      x.Set("name", g.name);
      x.Set("computeCapability", std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor));
      x.Set("multiprocessors", g.sm_count);
      x.Set("totalBytes", double(g.total_bytes));
      x.Set("freeBytes", double(g.free_bytes));
      x.Set("l2Bytes", double(g.l2_bytes));
      gpus.Set(i, x);
    }
    o.Set("gpus", gpus);
    return Napi::Value(o);
  });
}

}  // namespace e3js
