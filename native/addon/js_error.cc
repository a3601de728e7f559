#include "addon/js_error.h"

#include <cmath>
#include <exception>
#include <new>

namespace e3js {

Napi::Error make_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

void capture_error(std::string& code, std::string& message) {
  try {
    throw;
  } catch (const e3::Error& e) {
    code = e3::code_name(e.code());
    message = e.what();
  } catch (const std::bad_alloc&) {
    code = "ERR_OUT_OF_MEMORY";
    message = "host memory exhausted";
  } catch (const std::exception& e) {
    code = "ERR_INTERNAL";
    message = e.what();
  } catch (...) {
    code = "ERR_INTERNAL";
    message = "unknown native exception";
  }
}

Napi::Error current_error(Napi::Env env) {
  std::string code, message;
  capture_error(code, message);
  return make_error(env, code.c_str(), message);
}

Napi::Object arg_object(const Napi::Value& v, const char* name) {
  if (!v.IsObject()) e3::fail(e3::Code::InvalidArgument, std::string(name) + " must be an object");
  return v.As<Napi::Object>();
}

static Napi::Value field(const Napi::Object& o, const char* key, bool required) {
  Napi::Value v = o.Get(key);
  if (required && (v.IsUndefined() || v.IsNull())) e3::fail(e3::Code::InvalidArgument, std::string(key) + " is required");
  return v;
}

double get_number(const Napi::Object& o, const char* key, double def, bool required) {
  Napi::Value v = field(o, key, required);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
    e3::fail(e3::Code::InvalidArgument, std::string(key) + " must be a finite number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t get_int(const Napi::Object& o, const char* key, int64_t def, bool required) {
  double d = get_number(o, key, double(def), required);
  if (d != std::floor(d) || std::fabs(d) > 9007199254740991.0)
    e3::fail(e3::Code::InvalidArgument, std::string(key) + " must be an integer");
  return int64_t(d);
}

bool get_bool(const Napi::Object& o, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsBoolean()) e3::fail(e3::Code::InvalidArgument, std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string get_string(const Napi::Object& o, const char* key, const char* def) {
  Napi::Value v = o.Get(key);
  if ((v.IsUndefined() || v.IsNull()) && def) return def;
  if (!v.IsString()) e3::fail(e3::Code::InvalidArgument, std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace e3js
