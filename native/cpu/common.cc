#include "cpu/cpu_ops.h"

#include <chrono>

#include "runtime/error.h"

namespace e3 {

float load_f32(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::F32: return t.ptr<float>()[i];
    case DType::BF16: return bf16_to_float(t.ptr<uint16_t>()[i]);
    case DType::F16: return f16_to_float(t.ptr<uint16_t>()[i]);
    default: fail(Code::InvalidArgument, "expected a float tensor, got " + t.describe());
  }
}

static double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {

struct DoneRead final : Ops::PendingRead {
  void wait() override {}
};

// The CPU backend's work is done when its call returns: device time is host time.
struct HostTimer final : Ops::DeviceTimer {
  double start = now_ms(), end = -1;
  void stop() override { end = now_ms(); }
  double ms() override { return (end < 0 ? now_ms() : end) - start; }
};

}  // namespace

// The CPU backend's work is done when its call returns: the copies happen at once.
std::unique_ptr<Ops::PendingRead> CpuOps::download_async(const std::vector<HostRead>& reads) {
  for (const HostRead& r : reads) copy_to_host(r.src, 0, r.dst, r.bytes);
  return std::make_unique<DoneRead>();
}

std::unique_ptr<Ops::DeviceTimer> CpuOps::start_timer() { return std::make_unique<HostTimer>(); }

void expect_cpu(const Tensor& t, const char* what) {
  E3_ARG(t.device() == Device::CPU, std::string(what) + ": the CPU backend needs host tensors, got " + t.describe());
}

}  // namespace e3
