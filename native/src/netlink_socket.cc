// openNetlink(netnsPath: string | null, protocol: number, rcvbuf: number, sndbuf: number)
//   -> Promise<{ fd, portId, rcvbuf, sndbuf }>
// The socket is created on a helper thread inside the namespace (see netns_thread.h).
#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exports.h"
#include "netns_thread.h"
#include "promise_worker.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace podwire {
namespace {

// Sets a buffer size, forcing past net.core.{r,w}mem_max when we have CAP_NET_ADMIN.
void SetBufferSize(int fd, int forceOpt, int plainOpt, int bytes) {
  if (bytes <= 0) return;
  if (setsockopt(fd, SOL_SOCKET, forceOpt, &bytes, sizeof(bytes)) == 0) return;
  setsockopt(fd, SOL_SOCKET, plainOpt, &bytes, sizeof(bytes));  // capped by *mem_max: fine
}

int GetInt(int fd, int level, int opt) {
  int v = 0;
  socklen_t len = sizeof(v);
  return getsockopt(fd, level, opt, &v, &len) == 0 ? v : -1;
}

class OpenWorker : public PromiseWorker {
 public:
  OpenWorker(Napi::Env env, std::string path, int protocol, int rcvbuf, int sndbuf)
      : PromiseWorker(env, "podwire:openNetlink"),
        path_(std::move(path)), protocol_(protocol), rcvbuf_(rcvbuf), sndbuf_(sndbuf) {}

 protected:
  SysError Run() override {
    return RunInNetns(path_, [this]() { return Create(); });
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("fd", fd_);
    out.Set("portId", Napi::Number::New(env, portId_));
    out.Set("rcvbuf", effRcv_);
    out.Set("sndbuf", effSnd_);
    return out;
  }

 private:
  SysError Create() {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol_);
    if (fd < 0) return SysError::Of(errno, "socket");
    SetBufferSize(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf_);
    SetBufferSize(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf_);
    int one = 1;
    // Extended ACKs carry the kernel's human-readable reason; capped ACKs keep the
    // original request out of each error ACK (smaller receive-queue footprint).
    const int opts[] = {NETLINK_EXT_ACK, NETLINK_CAP_ACK};
    for (int opt : opts) {
      if (setsockopt(fd, SOL_NETLINK, opt, &one, sizeof(one)) != 0 && errno != ENOPROTOOPT) {
        int e = errno;
        close(fd);
        return SysError::Of(e, "setsockopt");
      }
    }
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;  // nl_pid 0: the kernel assigns a unique port id
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      int e = errno;
      close(fd);
      return SysError::Of(e, "bind");
    }
    socklen_t len = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      int e = errno;
      close(fd);
      return SysError::Of(e, "getsockname");
    }
    fd_ = fd;
    portId_ = addr.nl_pid;
    effRcv_ = GetInt(fd, SOL_SOCKET, SO_RCVBUF);
    effSnd_ = GetInt(fd, SOL_SOCKET, SO_SNDBUF);
    return SysError();
  }

  std::string path_;
  int protocol_, rcvbuf_, sndbuf_;
  int fd_ = -1;
  uint32_t portId_ = 0;
  int effRcv_ = -1, effSnd_ = -1;
};

}  // namespace

Napi::Value OpenNetlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (info[0].IsString()) path = info[0].As<Napi::String>().Utf8Value();
  else if (!info[0].IsNull() && !info[0].IsUndefined())
    throw Napi::TypeError::New(env, "netnsPath must be a string or null");
  int protocol = info[1].As<Napi::Number>().Int32Value();
  int rcvbuf = info[2].As<Napi::Number>().Int32Value();
  int sndbuf = info[3].As<Napi::Number>().Int32Value();
  auto* worker = new OpenWorker(env, path, protocol, rcvbuf, sndbuf);
  return worker->Queue();
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (close(fd) != 0 && errno != EINTR) throw MakeSysError(info.Env(), SysError::Of(errno, "close"));
  return info.Env().Undefined();
}

}  // namespace podwire
