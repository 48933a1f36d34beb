// flock(2) for lock files shared with other programs (the reference host-local IPAM
// plugin locks its store directory's lock file with flock).
//   flockTry(fd, exclusive) -> boolean         non-blocking, on the calling thread
//   flockWait(fd, exclusive, timeoutMs) -> Promise<boolean>
//       blocks on a pool thread; timeoutMs < 0 waits forever, otherwise the lock is
//       retried non-blocking with a capped backoff until the deadline (flock has no
//       timed form short of signals, which we must not send to pool threads).
//   funlock(fd)
#include <errno.h>
#include <sys/file.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "exports.h"
#include "promise_worker.h"

namespace podwire {
namespace {

class FlockWorker : public PromiseWorker {
 public:
  FlockWorker(Napi::Env env, int fd, bool exclusive, int timeoutMs)
      : PromiseWorker(env, "podwire:flock"), fd_(fd), op_(exclusive ? LOCK_EX : LOCK_SH), timeoutMs_(timeoutMs) {}

 protected:
  SysError Run() override {
    if (timeoutMs_ < 0) {
      while (flock(fd_, op_) != 0) {
        if (errno != EINTR) return SysError::Of(errno, "flock");
      }
      acquired_ = true;
      return SysError();
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs_);
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      if (flock(fd_, op_ | LOCK_NB) == 0) {
        acquired_ = true;
        return SysError();
      }
      if (errno != EWOULDBLOCK && errno != EINTR) return SysError::Of(errno, "flock");
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return SysError();  // acquired_ = false: timed out
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Boolean::New(env, acquired_); }

 private:
  int fd_, op_, timeoutMs_;
  bool acquired_ = false;
};

}  // namespace

Napi::Value FlockTry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = info[1].ToBoolean().Value() ? LOCK_EX : LOCK_SH;
  for (;;) {
    if (flock(fd, op | LOCK_NB) == 0) return Napi::Boolean::New(env, true);
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    if (errno != EINTR) throw MakeSysError(env, SysError::Of(errno, "flock"));
  }
}

Napi::Value FlockWait(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool exclusive = info[1].ToBoolean().Value();
  int timeoutMs = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
  auto* worker = new FlockWorker(info.Env(), fd, exclusive, timeoutMs);
  return worker->Queue();
}

Napi::Value Funlock(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  while (flock(fd, LOCK_UN) != 0) {
    if (errno != EINTR) throw MakeSysError(info.Env(), SysError::Of(errno, "flock"));
  }
  return info.Env().Undefined();
}

}  // namespace podwire
