// JS class NativeQwenModel: a Qwen target (weights, KV cache, executor) on one device, with an
// optional EAGLE-3 draft. Calls run on worker threads, one at a time and in the order they were
// made (their turn, under the model's mutex); a step or round leaves its turn once launched and
// waits for its tokens outside it, so that the next one can launch behind it. dispose() waits for the
// call whose turn it is.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

#include "addon/entry_points.h"
#include "addon/js_error.h"
#include "addon/parse_model.h"
#include "addon/tensor_wrap.h"
#include "runtime/cuda_util.h"
#include "runtime/error.h"
#include "runtime/spec_runner.h"

namespace e3js {

namespace {

struct ModelState {
  std::mutex mu;
  std::condition_variable turn_changed;
  uint64_t tickets = 0;  // handed out on the main thread, in call order
  uint64_t serving = 0;  // the ticket whose turn it is
  std::unique_ptr<e3::Executor> exec;  // without a draft
  std::unique_ptr<e3::SpecRunner> spec;  // with one (it owns the executor)
  e3::Executor* target() { return spec ? &spec->target() : exec.get(); }
};

template <class T, class A>
A typed_copy(Napi::Env env, const std::vector<T>& v) {
  A a = A::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(T));
  return a;
}

Napi::Object step_result(Napi::Env env, const e3::StepResult& r) {
  Napi::Object out = Napi::Object::New(env);
  if (!r.tokens.empty()) out.Set("tokens", typed_copy<int32_t, Napi::Int32Array>(env, r.tokens));
  if (!r.logits.empty()) out.Set("logits", typed_copy<float, Napi::Float32Array>(env, r.logits));
  if (!r.hidden.empty()) out.Set("hidden", typed_copy<float, Napi::Float32Array>(env, r.hidden));
  if (r.device_ms >= 0) out.Set("deviceMs", r.device_ms);
  out.Set("captured", r.captured);
  out.Set("callMs", r.call_ms);
  return out;
}

Napi::Object round_result(Napi::Env env, const e3::SpecRoundResult& r) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("tokens", typed_copy<int32_t, Napi::Int32Array>(env, r.tokens));
  out.Set("counts", typed_copy<int32_t, Napi::Int32Array>(env, r.counts));
  out.Set("drafted", typed_copy<int32_t, Napi::Int32Array>(env, r.drafted));
  out.Set("trees", typed_copy<int32_t, Napi::Int32Array>(env, r.trees));
  out.Set("draftMs", r.draft_ms);
  out.Set("verifyMs", r.verify_ms);
  out.Set("acceptMs", r.accept_ms);
  out.Set("deviceMs", r.device_ms);
  out.Set("stageMs", r.stage_ms);
  out.Set("readMs", r.read_ms);
  out.Set("captured", r.captured);
  out.Set("callMs", r.call_ms);
  return out;
}

// A call's work in two parts: the first runs in the call's turn, under the model's lock, and
// returns the second, which runs after the turn has passed to the next call.
template <class R>
using Work = std::function<std::function<R()>(ModelState&)>;

// Work done entirely in the call's turn.
template <class R>
Work<R> in_turn(std::function<R(ModelState&)> f) {
  return [f = std::move(f)](ModelState& s) {
    auto r = std::make_shared<R>(f(s));
    return std::function<R()>([r] { return std::move(*r); });
  };
}

// Resolves with `convert` of the work's result, run on a worker thread in the call's turn.
template <class R>
class TaskWorker : public Napi::AsyncWorker {
 public:
  TaskWorker(Napi::Env env, std::shared_ptr<ModelState> state, Work<R> work,
             std::function<Napi::Value(Napi::Env, const R&)> convert)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), state_(std::move(state)),
        ticket_(state_->tickets++), work_(std::move(work)), convert_(std::move(convert)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      std::function<R()> rest;
      {
        std::unique_lock<std::mutex> lock(state_->mu);
        state_->turn_changed.wait(lock, [&] { return state_->serving == ticket_; });
        struct PassTurn {  // also when the work throws
          ModelState& s;
          ~PassTurn() {
            s.serving++;
            s.turn_changed.notify_all();
          }
        } pass{*state_};
        E3_ARG(state_->target(), "the model was disposed");
        rest = work_(*state_);
      }
      result_ = rest();
    } catch (...) {
      capture_error(code_, message_);
      SetError(message_);
    }
  }
  void OnOK() override { deferred_.Resolve(convert_(Env(), result_)); }
  void OnError(const Napi::Error&) override { deferred_.Reject(make_error(Env(), code_.c_str(), message_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelState> state_;
  uint64_t ticket_;
  Work<R> work_;
  std::function<Napi::Value(Napi::Env, const R&)> convert_;
  R result_;
  std::string code_, message_;
};

// `work` with its wall time on the worker thread (from the start of its turn) in the result's
// call_ms: what the call cost, without the event loop's other work while its promise waited.
template <class R>
Work<R> timed(Work<R> work) {
  return [work = std::move(work)](ModelState& s) {
    auto t0 = std::chrono::steady_clock::now();
    std::function<R()> rest = work(s);
    return std::function<R()>([rest, t0] {
      R r = rest();
      r.call_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      return r;
    });
  };
}

template <class R>
Napi::Value queue(Napi::Env env, std::shared_ptr<ModelState> state, Work<R> work,
                  std::function<Napi::Value(Napi::Env, const R&)> convert) {
  auto* w = new TaskWorker<R>(env, std::move(state), std::move(work), std::move(convert));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeQwenModel",
                                   {InstanceMethod<&ModelWrap::Step>("step"),
                                    InstanceMethod<&ModelWrap::Prefill>("prefillSpeculative"),
                                    InstanceMethod<&ModelWrap::Round>("speculativeRound"),
                                    InstanceMethod<&ModelWrap::Candidates>("draftCandidates"),
                                    InstanceMethod<&ModelWrap::Dispose>("dispose"),
                                    InstanceAccessor<&ModelWrap::Info>("info")});
    exports.Set("NativeQwenModel", f);
  }

  // new NativeQwenModel({ config, weights, device, maxTokens, maxLogitRows, numPages, pageSize,
  //                       cudaGraphs, draft?: { config, weights, slots } })
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
      auto exec = std::make_unique<e3::Executor>(e3::make_ops(dev), parse_config(arg_object(o.Get("config"), "config")),
                                                 parse_weights(arg_object(o.Get("weights"), "weights")), eo);
      Napi::Value d = o.Get("draft");
      if (d.IsUndefined() || d.IsNull()) {
        state_->exec = std::move(exec);
      } else {
        Napi::Object dr = arg_object(d, "draft");
        state_->spec = std::make_unique<e3::SpecRunner>(
            std::move(exec), parse_draft_config(arg_object(dr.Get("config"), "draft.config")),
            parse_draft_weights(arg_object(dr.Get("weights"), "draft.weights")), int(get_int(dr, "slots", 0, true)),
            eo.max_tokens);
      }
      return 0;
    });
  }

 private:
  Napi::Value Step(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] {
      auto step = std::make_shared<e3::HostStep>(parse_step(arg_object(info[0], "step")));
      Work<e3::StepResult> work = [step](ModelState& s) {
        std::shared_ptr<e3::PendingStep> p = s.target()->launch(*step);
        return std::function<e3::StepResult()>([p] { return e3::Executor::finish(*p); });
      };
      return queue<e3::StepResult>(info.Env(), state_, timed<e3::StepResult>(work),
                                   [](Napi::Env env, const e3::StepResult& r) { return Napi::Value(step_result(env, r)); });
    });
  }

  Napi::Value Prefill(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] {
      auto p = std::make_shared<e3::HostSpecPrefill>(parse_spec_prefill(arg_object(info[0], "prefill")));
      auto work = in_turn<e3::StepResult>([p](ModelState& s) { return spec_of(s).prefill(*p); });
      return queue<e3::StepResult>(info.Env(), state_, timed<e3::StepResult>(work),
                                   [](Napi::Env env, const e3::StepResult& r) { return Napi::Value(step_result(env, r)); });
    });
  }

  Napi::Value Round(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] {
      auto r = std::make_shared<e3::HostSpecRound>(parse_spec_round(arg_object(info[0], "round")));
      Work<e3::SpecRoundResult> work = [r](ModelState& s) {
        std::shared_ptr<e3::PendingRound> p = spec_of(s).launch_round(*r);
        return std::function<e3::SpecRoundResult()>([p] { return e3::SpecRunner::finish_round(*p); });
      };
      return queue<e3::SpecRoundResult>(info.Env(), state_, timed<e3::SpecRoundResult>(work),
                                        [](Napi::Env env, const e3::SpecRoundResult& x) { return Napi::Value(round_result(env, x)); });
    });
  }

  // draftCandidates(slot): { probs, ids } the slot's next round starts from
  Napi::Value Candidates(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] {
      std::vector<float> probs;
      std::vector<int32_t> ids;
      {
        std::lock_guard<std::mutex> lock(state_->mu);
        spec_of(*state_).candidates(info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1, probs, ids);
      }
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("probs", typed_copy<float, Napi::Float32Array>(info.Env(), probs));
      o.Set("ids", typed_copy<int32_t, Napi::Int32Array>(info.Env(), ids));
      return Napi::Value(o);
    });
  }

  static e3::SpecRunner& spec_of(ModelState& s) {
    E3_ARG(s.spec, "this model was created without a draft");
    return *s.spec;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->spec.reset();
    state_->exec.reset();
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    std::lock_guard<std::mutex> lock(state_->mu);
    e3::Executor* t = state_->target();
    o.Set("disposed", t == nullptr);
    o.Set("speculative", state_->spec != nullptr);
    if (t) {
      o.Set("kvBytes", double(t->kv().bytes()));
      o.Set("numPages", t->pages());
      o.Set("pageSize", t->kv().page_size);
    }
    return o;
  }

  std::shared_ptr<ModelState> state_ = std::make_shared<ModelState>();
};

}  // namespace

void InitModel(Napi::Env env, Napi::Object exports) { ModelWrap::Init(env, exports); }

}  // namespace e3js
