// sysctl(netnsPath: string | null, relPath: string, value: string | null) -> Promise<string>
// Reads (value null) or writes /proc/sys/<relPath>. /proc/sys/net/* resolves against the
// network namespace of the thread that opens it, so the open happens on a helper thread
// inside the namespace (netns_thread.h). A write resolves with "".
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "exports.h"
#include "netns_thread.h"
#include "promise_worker.h"

namespace podwire {
namespace {

class SysctlWorker : public PromiseWorker {
 public:
  SysctlWorker(Napi::Env env, std::string netns, std::string rel, bool write, std::string value)
      : PromiseWorker(env, "podwire:sysctl"),
        netns_(std::move(netns)), path_("/proc/sys/" + rel), write_(write), value_(std::move(value)) {}

 protected:
  SysError Run() override {
    return RunInNetns(netns_, [this]() { return write_ ? Write() : Read(); });
  }
  Napi::Value Result(Napi::Env env) override { return Napi::String::New(env, out_); }

 private:
  SysError Read() {
    int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SysError::Of(errno, "open", path_);
    char buf[4096];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int e = errno;
        close(fd);
        return SysError::Of(e, "read", path_);
      }
      if (n == 0) break;
      out_.append(buf, n);
      if (out_.size() > (1u << 20)) break;  // bound: no sysctl is this large
    }
    close(fd);
    return SysError();
  }

  SysError Write() {
    int fd = open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return SysError::Of(errno, "open", path_);
    ssize_t n;
    do n = write(fd, value_.data(), value_.size());
    while (n < 0 && errno == EINTR);
    int e = n < 0 ? errno : (static_cast<size_t>(n) != value_.size() ? EIO : 0);
    close(fd);
    return e != 0 ? SysError::Of(e, "write", path_) : SysError();
  }

  std::string netns_, path_;
  bool write_;
  std::string value_, out_;
};

}  // namespace

Napi::Value Sysctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netns;
  if (info[0].IsString()) netns = info[0].As<Napi::String>().Utf8Value();
  if (!info[1].IsString()) throw Napi::TypeError::New(env, "sysctl path must be a string");
  std::string rel = info[1].As<Napi::String>().Utf8Value();
  // Defence in depth: the TS layer validates keys; never let a path climb out of /proc/sys.
  if (rel.empty() || rel[0] == '/' || rel.find("..") != std::string::npos)
    throw Napi::TypeError::New(env, "invalid sysctl path: " + rel);
  bool write = info[2].IsString();
  std::string value = write ? info[2].As<Napi::String>().Utf8Value() : std::string();
  auto* worker = new SysctlWorker(env, netns, rel, write, value);
  return worker->Queue();
}

}  // namespace podwire
