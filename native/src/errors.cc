#include "errors.h"

#include <string.h>

namespace podwire {

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? std::string(name) : "E" + std::to_string(err);
}

Napi::Error MakeSysError(Napi::Env env, const SysError& e) {
  std::string code = ErrnoName(e.err);
  char buf[256];
  // GNU strerror_r returns a pointer that may or may not be buf.
  const char* text = strerror_r(e.err, buf, sizeof(buf));
  std::string message = std::string(e.syscall) + " " + code + " (" + text + ")";
  if (!e.path.empty()) message += " " + e.path;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, e.err));
  error.Set("syscall", Napi::String::New(env, e.syscall));
  if (!e.path.empty()) error.Set("path", Napi::String::New(env, e.path));
  return error;
}

}  // namespace podwire
