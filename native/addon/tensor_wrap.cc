#include "addon/tensor_wrap.h"

#include "addon/js_error.h"
#include "runtime/error.h"

namespace e3js {

Napi::FunctionReference* TensorWrap::ctor_ = nullptr;

e3::Device parse_device(const std::string& s) {
  if (s == "cpu") return e3::Device::CPU;
  if (s == "cuda") return e3::Device::CUDA;
  e3::fail(e3::Code::InvalidArgument, "device must be \"cpu\" or \"cuda\", got \"" + s + "\"");
}

std::vector<int64_t> parse_counts(const Napi::Value& v, const char* what) {
  const std::string msg = std::string(what) + " must be an array of non-negative integers";
  if (!v.IsArray()) e3::fail(e3::Code::InvalidArgument, msg);
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> s;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value d = a.Get(i);
    double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (x < 0 || x != double(int64_t(x))) e3::fail(e3::Code::InvalidArgument, msg);
    s.push_back(int64_t(x));
  }
  return s;
}

e3::Shape parse_shape(const Napi::Value& v) { return parse_counts(v, "shape"); }

void TensorWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "NativeTensor",
                                 {StaticMethod<&TensorWrap::Empty>("empty"),
                                  StaticMethod<&TensorWrap::FromBytes>("fromBytes"),
                                  InstanceAccessor<&TensorWrap::GetDtype>("dtype"),
                                  InstanceAccessor<&TensorWrap::GetShape>("shape"),
                                  InstanceAccessor<&TensorWrap::GetDevice>("device"),
                                  InstanceAccessor<&TensorWrap::GetNbytes>("nbytes"),
                                  InstanceAccessor<&TensorWrap::GetDisposed>("disposed"),
                                  InstanceMethod<&TensorWrap::ToBytes>("toBytes"),
                                  InstanceMethod<&TensorWrap::Dispose>("dispose")});
  ctor_ = new Napi::FunctionReference(Napi::Persistent(f));  // lives as long as the addon
  exports.Set("NativeTensor", f);
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {}

Napi::Object TensorWrap::Wrap(Napi::Env env, e3::Tensor t) {
  Napi::Object obj = ctor_->New({});
  Unwrap(obj)->tensor_ = std::move(t);
  return obj;
}

const e3::Tensor& TensorWrap::From(const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor_->Value()))
    e3::fail(e3::Code::InvalidArgument, std::string(what) + " must be a NativeTensor");
  return Unwrap(v.As<Napi::Object>())->live(what);
}

const e3::Tensor& TensorWrap::live(const char* what) const {
  if (!tensor_.defined()) e3::fail(e3::Code::InvalidArgument, std::string(what) + " was disposed");
  return tensor_;
}

// empty(dtype, shape, device)
Napi::Value TensorWrap::Empty(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    if (info.Length() < 3 || !info[0].IsString() || !info[2].IsString())
      e3::fail(e3::Code::InvalidArgument, "empty(dtype, shape, device)");
    e3::DType dt = e3::dtype_from_name(info[0].As<Napi::String>());
    e3::Tensor t = e3::Tensor::empty(parse_device(info[2].As<Napi::String>()), dt, parse_shape(info[1]));
    return Napi::Value(Wrap(info.Env(), std::move(t)));
  });
}

// fromBytes(bytes: ArrayBufferView, dtype, shape, device): a copy of the bytes
Napi::Value TensorWrap::FromBytes(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsString() || !info[3].IsString())
      e3::fail(e3::Code::InvalidArgument, "fromBytes(bytes: TypedArray, dtype, shape, device)");
    Napi::TypedArray src = info[0].As<Napi::TypedArray>();
    e3::DType dt = e3::dtype_from_name(info[1].As<Napi::String>());
    e3::Shape shape = parse_shape(info[2]);
    size_t want = size_t(e3::shape_numel(shape)) * e3::dtype_size(dt);
    if (src.ByteLength() != want)
      e3::fail(e3::Code::InvalidArgument, "fromBytes: " + std::to_string(src.ByteLength()) + " bytes given, " +
                                              std::string(e3::dtype_name(dt)) + e3::shape_str(shape) + " needs " +
                                              std::to_string(want));
    e3::Tensor t = e3::Tensor::empty(parse_device(info[3].As<Napi::String>()), dt, shape);
    const char* p = static_cast<const char*>(src.ArrayBuffer().Data()) + src.ByteOffset();
    e3::copy_from_host(t, 0, p, want);
    return Napi::Value(Wrap(info.Env(), std::move(t)));
  });
}

Napi::Value TensorWrap::GetDtype(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] { return Napi::Value(Napi::String::New(info.Env(), e3::dtype_name(live("tensor").dtype()))); });
}

Napi::Value TensorWrap::GetShape(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    const e3::Shape& s = live("tensor").shape();
    Napi::Array a = Napi::Array::New(info.Env(), s.size());
    for (uint32_t i = 0; i < s.size(); ++i) a.Set(i, Napi::Number::New(info.Env(), double(s[i])));
    return Napi::Value(a);
  });
}

Napi::Value TensorWrap::GetDevice(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] { return Napi::Value(Napi::String::New(info.Env(), e3::device_name(live("tensor").device()))); });
}

Napi::Value TensorWrap::GetNbytes(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] { return Napi::Value(Napi::Number::New(info.Env(), double(live("tensor").nbytes()))); });
}

Napi::Value TensorWrap::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor_.defined());
}

// toBytes(): Uint8Array copy of the contents
Napi::Value TensorWrap::ToBytes(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    const e3::Tensor& t = live("tensor");
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(info.Env(), t.nbytes());
    e3::copy_to_host(t, 0, ab.Data(), t.nbytes());
    return Napi::Value(Napi::Uint8Array::New(info.Env(), t.nbytes(), ab, 0));
  });
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  tensor_ = e3::Tensor();
  return info.Env().Undefined();
}

}  // namespace e3js
