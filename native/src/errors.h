// System-call failures carried from a worker thread to the JS thread. Worker threads
// must not touch napi_env, so they record {errno, syscall, path} here and the JS-thread
// completion turns it into an Error with Node's usual `code`/`errno`/`syscall`/`path`.
#pragma once
#include <napi.h>
#include <string>

namespace podwire {

struct SysError {
  int err = 0;               // positive errno; 0 = no error
  const char* syscall = "";  // static string naming the failing call
  std::string path;          // file path involved, if any

  bool failed() const { return err != 0; }
  static SysError Of(int e, const char* call, std::string p = std::string()) {
    SysError s;
    s.err = e;
    s.syscall = call;
    s.path = std::move(p);
    return s;
  }
};

// Builds `Error: <syscall> <CODE> (<strerror>) [path]` with properties code (e.g. "ENOENT"),
// errno (positive), syscall and path.
Napi::Error MakeSysError(Napi::Env env, const SysError& e);

// Symbolic errno name ("ENOENT"), or "E<number>" when unknown.
std::string ErrnoName(int err);

}  // namespace podwire
