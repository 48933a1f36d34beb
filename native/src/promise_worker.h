// An AsyncWorker that settles a Promise. Run() executes on a libuv pool thread and must
// not touch JS; it returns a SysError. Result() runs on the JS thread after success.
#pragma once
#include <napi.h>

#include "errors.h"

namespace podwire {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Queue() {
    Napi::Promise promise = deferred_.Promise();
    Napi::AsyncWorker::Queue();
    return promise;
  }

 protected:
  virtual SysError Run() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  void Execute() override { error_ = Run(); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (error_.failed()) {
      deferred_.Reject(MakeSysError(env, error_).Value());
      return;
    }
    try {
      deferred_.Resolve(Result(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  SysError error_;
};

}  // namespace podwire
