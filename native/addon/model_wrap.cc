// JS class NativeQwenModel: a Qwen target (weights, KV cache, executor) on one device.
// step() runs on a worker thread; steps on one model are serialised by its mutex.
#include <memory>
#include <mutex>

#include "addon/entry_points.h"
#include "addon/js_error.h"
#include "addon/tensor_wrap.h"
#include "runtime/cuda_util.h"
#include "runtime/error.h"
#include "runtime/step.h"

namespace e3js {

namespace {

struct ModelState {
  std::mutex mu;
  std::unique_ptr<e3::Executor> exec;
};

template <class T, napi_typedarray_type Kind>
std::vector<T> typed_vector(const Napi::Object& o, const char* key, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) e3::fail(e3::Code::InvalidArgument, std::string(key) + " is required");
    return {};
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Kind)
    e3::fail(e3::Code::InvalidArgument, std::string(key) + " has the wrong typed-array type");
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  const T* p = reinterpret_cast<const T*>(static_cast<const char*>(a.ArrayBuffer().Data()) + a.ByteOffset());
  return std::vector<T>(p, p + a.ElementLength());
}

e3::HostStep parse_step(const Napi::Object& o) {
  e3::HostStep s;
  s.tokens = typed_vector<int32_t, napi_int32_array>(o, "tokens", true);
  s.positions = typed_vector<int32_t, napi_int32_array>(o, "positions", true);
  s.q_start = typed_vector<int32_t, napi_int32_array>(o, "qStart", true);
  s.kv_len = typed_vector<int32_t, napi_int32_array>(o, "kvLen", true);
  s.page_table = typed_vector<int32_t, napi_int32_array>(o, "pageTable", true);
  s.max_pages = int(get_int(o, "maxPages", 0, true));
  s.tree_mask = typed_vector<int64_t, napi_bigint64_array>(o, "treeMask", false);
  s.logit_rows = typed_vector<int32_t, napi_int32_array>(o, "logitRows", true);
  std::vector<uint8_t> raw = typed_vector<uint8_t, napi_uint8_array>(o, "sampling", false);
  E3_ARG(raw.size() % sizeof(e3::SamplingParams) == 0, "sampling must hold 32 bytes per logit row");
  s.sampling.resize(raw.size() / sizeof(e3::SamplingParams));
  if (!raw.empty()) std::memcpy(s.sampling.data(), raw.data(), raw.size());
  s.want_logits = get_bool(o, "wantLogits", false);
  s.want_hidden = get_bool(o, "wantHidden", false);
  s.want_timing = get_bool(o, "wantTiming", false);
  return s;
}

class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, std::shared_ptr<ModelState> state, e3::HostStep step)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), state_(std::move(state)),
        step_(std::move(step)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(state_->mu);
      E3_ARG(state_->exec, "the model was disposed");
      result_ = state_->exec->run(step_);
    } catch (...) {
      capture_error(code_, message_);
      SetError(message_);
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    if (!result_.tokens.empty()) out.Set("tokens", copy_out<int32_t, Napi::Int32Array>(env, result_.tokens));
    if (!result_.logits.empty()) out.Set("logits", copy_out<float, Napi::Float32Array>(env, result_.logits));
    if (!result_.hidden.empty()) out.Set("hidden", copy_out<float, Napi::Float32Array>(env, result_.hidden));
    if (result_.device_ms >= 0) out.Set("deviceMs", result_.device_ms);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error&) override { deferred_.Reject(make_error(Env(), code_.c_str(), message_).Value()); }

 private:
  template <class T, class A>
  static A copy_out(Napi::Env env, const std::vector<T>& v) {
    A a = A::New(env, v.size());
    std::memcpy(a.Data(), v.data(), v.size() * sizeof(T));
    return a;
  }
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelState> state_;
  e3::HostStep step_;
  e3::StepResult result_;
  std::string code_, message_;
};

e3::Tensor optional_tensor(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return e3::Tensor();
  return TensorWrap::From(v, key);
}

e3::QwenWeights parse_weights(const Napi::Object& o) {
  e3::QwenWeights w;
  w.embed = TensorWrap::From(o.Get("embed"), "weights.embed");
  w.final_norm = TensorWrap::From(o.Get("finalNorm"), "weights.finalNorm");
  w.lm_head = TensorWrap::From(o.Get("lmHead"), "weights.lmHead");
  Napi::Value layers = o.Get("layers");
  E3_ARG(layers.IsArray(), "weights.layers must be an array");
  Napi::Array a = layers.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Object l = arg_object(a.Get(i), "weights.layers[i]");
    e3::QwenLayerWeights L;
    L.input_norm = TensorWrap::From(l.Get("inputNorm"), "inputNorm");
    L.qkv = TensorWrap::From(l.Get("qkv"), "qkv");
    L.qkv_bias = optional_tensor(l, "qkvBias");
    L.q_norm = optional_tensor(l, "qNorm");
    L.k_norm = optional_tensor(l, "kNorm");
    L.o = TensorWrap::From(l.Get("o"), "o");
    L.post_norm = TensorWrap::From(l.Get("postNorm"), "postNorm");
    L.gate_up = TensorWrap::From(l.Get("gateUp"), "gateUp");
    L.down = TensorWrap::From(l.Get("down"), "down");
    w.layers.push_back(std::move(L));
  }
  return w;
}

e3::QwenConfig parse_config(const Napi::Object& o) {
  e3::QwenConfig c;
  c.hidden = int(get_int(o, "hiddenSize", 0, true));
  c.layers = int(get_int(o, "numLayers", 0, true));
  c.heads = int(get_int(o, "numHeads", 0, true));
  c.kv_heads = int(get_int(o, "numKvHeads", 0, true));
  c.head_dim = int(get_int(o, "headDim", 0, true));
  c.intermediate = int(get_int(o, "intermediateSize", 0, true));
  c.vocab = int(get_int(o, "vocabSize", 0, true));
  c.eps = float(get_number(o, "rmsNormEps", 1e-6, true));
  c.rope_theta = float(get_number(o, "ropeTheta", 10000, true));
  c.rotary_dim = int(get_int(o, "rotaryDim", c.head_dim));
  c.qk_norm = get_bool(o, "qkNorm", false);
  c.qkv_bias = get_bool(o, "attentionBias", false);
  Napi::Value cap = o.Get("captureLayers");
  if (cap.IsArray()) {
    Napi::Array a = cap.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) c.capture_layers.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  }
  return c;
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeQwenModel",
                                   {InstanceMethod<&ModelWrap::Step>("step"),
                                    InstanceMethod<&ModelWrap::Dispose>("dispose"),
                                    InstanceAccessor<&ModelWrap::Info>("info")});
    exports.Set("NativeQwenModel", f);
  }

  // new NativeQwenModel({ config, weights, device, maxTokens, numPages, pageSize })
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    guard(info.Env(), [&] {
      Napi::Object o = arg_object(info[0], "options");
      e3::Device dev = parse_device(get_string(o, "device", "cpu"));
      if (dev == e3::Device::CUDA) e3::require_cuda_device();
      e3::ExecutorOptions eo;
      eo.max_tokens = int(get_int(o, "maxTokens", 512));
      eo.max_logit_rows = int(get_int(o, "maxLogitRows", 256));
      eo.num_pages = int(get_int(o, "numPages", 0, true));
      eo.page_size = int(get_int(o, "pageSize", 16));
      eo.graphs = get_bool(o, "cudaGraphs", true);
      state_->exec = std::make_unique<e3::Executor>(e3::make_ops(dev), parse_config(arg_object(o.Get("config"), "config")),
                                                    parse_weights(arg_object(o.Get("weights"), "weights")), eo);
      return 0;
    });
  }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] {
      auto* w = new StepWorker(info.Env(), state_, parse_step(arg_object(info[0], "step")));
      Napi::Promise p = w->promise();
      w->Queue();
      return Napi::Value(p);
    });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(state_->mu);  // waits for a step in flight
    state_->exec.reset();
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    std::lock_guard<std::mutex> lock(state_->mu);
    o.Set("disposed", state_->exec == nullptr);
    if (state_->exec) {
      o.Set("kvBytes", double(state_->exec->kv().bytes()));
      o.Set("numPages", state_->exec->pages());
      o.Set("pageSize", state_->exec->kv().page_size);
    }
    return o;
  }

  std::shared_ptr<ModelState> state_ = std::make_shared<ModelState>();
};

}  // namespace

void InitModel(Napi::Env env, Napi::Object exports) { ModelWrap::Init(env, exports); }

}  // namespace e3js
