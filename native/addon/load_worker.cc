// loadTensors(path, entries, onProgress?): streams tensors out of one checkpoint file into native
// tensors off the main thread, with a bounded staging buffer, converting float types on the way.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "addon/js_error.h"
#include "addon/entry_points.h"
#include "addon/tensor_wrap.h"
#include "runtime/error.h"

namespace e3js {

namespace {

struct LoadEntry {
  std::string name;
  e3::Tensor dst;
  size_t dst_offset, file_offset, bytes;
  e3::DType src_dtype;
};

constexpr size_t kStagingBytes = 8u << 20;

class LoadWorker : public Napi::AsyncProgressQueueWorker<double> {
 public:
  LoadWorker(Napi::Env env, std::string path, std::vector<LoadEntry> entries, Napi::Function progress)
      : Napi::AsyncProgressQueueWorker<double>(env), deferred_(Napi::Promise::Deferred::New(env)),
        path_(std::move(path)), entries_(std::move(entries)) {
    if (!progress.IsEmpty()) progress_ = Napi::Persistent(progress);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override {
    try {
      run(progress);
    } catch (...) {
      capture_error(code_, message_);
      SetError(message_);
    }
  }
  void OnProgress(const double* data, size_t n) override {
    if (!progress_.IsEmpty() && n) progress_.Call({Napi::Number::New(Env(), data[n - 1])});
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error&) override { deferred_.Reject(make_error(Env(), code_.c_str(), message_).Value()); }

 private:
  void run(const ExecutionProgress& progress) {
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) e3::fail(e3::Code::BadCheckpoint, "cannot open " + path_ + ": " + std::strerror(errno));
    struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
    std::vector<char> staging(kStagingBytes), converted;
    double done = 0;
    for (const LoadEntry& e : entries_) {
      size_t src_es = e3::dtype_size(e.src_dtype), dst_es = e3::dtype_size(e.dst.dtype());
      size_t chunk = kStagingBytes / src_es * src_es;
      for (size_t pos = 0; pos < e.bytes; pos += chunk) {
        size_t n = std::min(chunk, e.bytes - pos);
        read_exact(fd, staging.data(), n, e.file_offset + pos, e.name);
        size_t elems = n / src_es, out_off = e.dst_offset + pos / src_es * dst_es;
        if (e.src_dtype == e.dst.dtype()) {
          e3::copy_from_host(e.dst, out_off, staging.data(), n);
        } else {
          converted.resize(elems * dst_es);
          e3::convert_elements(staging.data(), e.src_dtype, converted.data(), e.dst.dtype(), elems);
          e3::copy_from_host(e.dst, out_off, converted.data(), converted.size());
        }
        done += double(n);
        progress.Send(&done, 1);
      }
    }
  }

  void read_exact(int fd, char* dst, size_t n, size_t offset, const std::string& name) {
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd, dst + got, n - got, off_t(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        e3::fail(e3::Code::BadCheckpoint, path_ + ": tensor " + name + " is cut short (" +
                                              (r < 0 ? std::string(std::strerror(errno)) : "end of file") + " at byte " +
                                              std::to_string(offset + got) + ")");
      got += size_t(r);
    }
  }

  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference progress_;
  std::string path_;
  std::vector<LoadEntry> entries_;
  std::string code_, message_;
};

}  // namespace

// entries: [{ name, tensor, dstOffset, fileOffset, byteLength, srcDtype }]
Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&] {
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray())
      e3::fail(e3::Code::InvalidArgument, "loadTensors(path, entries, onProgress?)");
    std::string path = info[0].As<Napi::String>();
    Napi::Array arr = info[1].As<Napi::Array>();
    std::vector<LoadEntry> entries;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Object o = arg_object(arr.Get(i), "entry");
      LoadEntry e{get_string(o, "name"), TensorWrap::From(o.Get("tensor"), "entry.tensor"),
                  size_t(get_int(o, "dstOffset", 0)), size_t(get_int(o, "fileOffset", 0, true)),
                  size_t(get_int(o, "byteLength", 0, true)), e3::dtype_from_name(get_string(o, "srcDtype"))};
      size_t src_es = e3::dtype_size(e.src_dtype), dst_es = e3::dtype_size(e.dst.dtype());
      E3_ARG(e.bytes % src_es == 0, e.name + ": byte length is not a whole number of elements");
      E3_ARG(e.dst_offset + e.bytes / src_es * dst_es <= e.dst.nbytes(),
             e.name + ": " + std::to_string(e.bytes) + " bytes do not fit " + e.dst.describe() + " at offset " +
                 std::to_string(e.dst_offset));
      if (e.src_dtype != e.dst.dtype()) e3::convert_elements(nullptr, e.src_dtype, nullptr, e.dst.dtype(), 0);
      entries.push_back(std::move(e));
    }
    Napi::Function progress = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
    auto* w = new LoadWorker(info.Env(), path, std::move(entries), progress);
    Napi::Promise p = w->promise();
    w->Queue();
    return Napi::Value(p);
  });
}

}  // namespace e3js
