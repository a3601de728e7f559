// JS class NativeTensor: owns one e3::Tensor view. dispose() drops it at once; the finalizer is
// the safety net. Memory is freed when no tensor or model refers to the buffer any more.
#pragma once
#include <napi.h>

#include "runtime/tensor.h"

namespace e3js {

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, e3::Tensor t);
  // The tensor inside a NativeTensor argument; throws ERR_INVALID_ARGUMENT naming `what` otherwise.
  static const e3::Tensor& From(const Napi::Value& v, const char* what);
  explicit TensorWrap(const Napi::CallbackInfo& info);

 private:
  static Napi::Value Empty(const Napi::CallbackInfo& info);
  static Napi::Value FromBytes(const Napi::CallbackInfo& info);
  Napi::Value GetDtype(const Napi::CallbackInfo& info);
  Napi::Value GetShape(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetNbytes(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value ToBytes(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  const e3::Tensor& live(const char* what) const;

  e3::Tensor tensor_;
  static Napi::FunctionReference* ctor_;
};

e3::Device parse_device(const std::string& s);
// An array of non-negative integers; ERR_INVALID_ARGUMENT naming `what` otherwise.
std::vector<int64_t> parse_counts(const Napi::Value& v, const char* what);
e3::Shape parse_shape(const Napi::Value& v);

}  // namespace e3js
