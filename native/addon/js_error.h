// Native failures become JS Errors with a stable `code`. Every entry point runs its body through
// guard(), so no C++ exception can reach node-addon-api (which would abort on a non-Napi one).
#pragma once
#include <napi.h>

#include <string>

#include "runtime/error.h"

namespace e3js {

Napi::Error make_error(Napi::Env env, const char* code, const std::string& message);

// Converts the exception in flight into a Napi::Error.
Napi::Error current_error(Napi::Env env);

// Captures the exception in flight as (code, message), for reporting from worker threads.
void capture_error(std::string& code, std::string& message);

template <class F>
auto guard(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw current_error(env);
  }
}

// Argument helpers: throw ERR_INVALID_ARGUMENT naming the argument.
Napi::Object arg_object(const Napi::Value& v, const char* name);
int64_t get_int(const Napi::Object& o, const char* key, int64_t def, bool required = false);
double get_number(const Napi::Object& o, const char* key, double def, bool required = false);
bool get_bool(const Napi::Object& o, const char* key, bool def);
std::string get_string(const Napi::Object& o, const char* key, const char* def = nullptr);

}  // namespace e3js
