// Every native failure is an e3::Error carrying a stable code; the addon maps it to a JS Error
// with that code. Native code never aborts the process.
#pragma once
#include <stdexcept>
#include <string>

namespace e3 {

enum class Code {
  InvalidArgument,
  BadCheckpoint,
  UnsupportedModel,
  DraftMismatch,
  OutOfMemory,
  NoCudaDevice,
  Aborted,
  Cuda,
  Internal,
};

const char* code_name(Code code);  // "ERR_INVALID_ARGUMENT", ...

class Error : public std::runtime_error {
 public:
  Error(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Code code() const { return code_; }

 private:
  Code code_;
};

[[noreturn]] inline void fail(Code code, const std::string& message) { throw Error(code, message); }

}  // namespace e3

#define E3_CHECK(cond, code, msg)                          \
  do {                                                     \
    if (!(cond)) ::e3::fail(::e3::Code::code, (msg));      \
  } while (0)

#define E3_ARG(cond, msg) E3_CHECK(cond, InvalidArgument, msg)
