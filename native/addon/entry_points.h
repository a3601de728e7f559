// Entry points defined in their own files and registered by addon.cc.
#pragma once
#include <napi.h>

namespace e3js {

Napi::Value LoadTensors(const Napi::CallbackInfo& info);
Napi::Value BuildInfo(const Napi::CallbackInfo& info);
Napi::Value CudaStatus(const Napi::CallbackInfo& info);
Napi::Value MeasureCopyBandwidth(const Napi::CallbackInfo& info);
Napi::Value MeasureGemmFlops(const Napi::CallbackInfo& info);
void InitModel(Napi::Env env, Napi::Object exports);
void InitOps(Napi::Env env, Napi::Object exports);

}  // namespace e3js
