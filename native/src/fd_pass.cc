// The podwired side of the DNS socket keeper (native/dns-keeper/keeper.c): a SOCK_SEQPACKET
// connection to an abstract unix address and one request/reply exchange carrying fds
// (SCM_RIGHTS), which Node's net module cannot do. Plus a listening TCP socket opened here, so
// its fd is ours to hand to the keeper (Node's net.Server adopts it with listen({ fd })).
//
// seqpacketConnect(name) -> fd               (throws a SysError: ECONNREFUSED when no keeper)
// seqpacketRequest(fd, text, fds: number[], timeoutMs) -> [{ text, fd }]
//   Sends `text` with `fds`, then reads replies until one that is not "FD ..." (END, OK, ERR ...);
//   each reply's fd is -1 when it carried none. Blocking, bounded by timeoutMs per reply.
// tcpListenOpen(host, port, ipv6, backlog) -> fd   (SO_REUSEADDR + SO_REUSEPORT, bound, listening)
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "bound_socket.h"
#include "errors.h"
#include "exports.h"

namespace podwire {
namespace {
constexpr size_t kMaxFds = 64;
constexpr size_t kMsgMax = 4096;
}  // namespace

Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (name.empty() || name.size() > sizeof(sa.sun_path) - 1) throw Napi::RangeError::New(env, "keeper name must be 1..107 bytes");
  std::memcpy(sa.sun_path + 1, name.data(), name.size());
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) throw MakeSysError(env, SysError::Of(errno, "socket"));
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) {
    int e = errno;
    close(fd);
    throw MakeSysError(env, SysError::Of(e, "connect", "@" + name));
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SeqpacketRequest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string text = info[1].As<Napi::String>().Utf8Value();
  Napi::Array fdsIn = info[2].As<Napi::Array>();
  int timeoutMs = info[3].As<Napi::Number>().Int32Value();
  std::vector<int> fds;
  for (uint32_t i = 0; i < fdsIn.Length() && fds.size() < kMaxFds; i++) fds.push_back(fdsIn.Get(i).As<Napi::Number>().Int32Value());

  iovec iov = {const_cast<char*>(text.data()), text.size()};
  msghdr m;
  std::memset(&m, 0, sizeof(m));
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  std::vector<char> ctl(CMSG_SPACE(sizeof(int) * kMaxFds));
  if (!fds.empty()) {
    m.msg_control = ctl.data();
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t r;
  do r = sendmsg(fd, &m, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0) throw MakeSysError(env, SysError::Of(errno, "sendmsg"));

  Napi::Array out = Napi::Array::New(env);
  std::vector<int> received;  // closed again if we throw half-way
  for (uint32_t k = 0;; k++) {
    pollfd p = {fd, POLLIN, 0};
    int pr;
    do pr = poll(&p, 1, timeoutMs);
    while (pr < 0 && errno == EINTR);
    if (pr <= 0) {
      for (int x : received) close(x);
      throw MakeSysError(env, SysError::Of(pr == 0 ? ETIMEDOUT : errno, "poll", "keeper reply"));
    }
    char buf[kMsgMax + 1];
    iovec riov = {buf, kMsgMax};
    msghdr rm;
    std::memset(&rm, 0, sizeof(rm));
    rm.msg_iov = &riov;
    rm.msg_iovlen = 1;
    std::vector<char> rctl(CMSG_SPACE(sizeof(int) * kMaxFds));
    rm.msg_control = rctl.data();
    rm.msg_controllen = rctl.size();
    ssize_t n;
    do n = recvmsg(fd, &rm, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
      for (int x : received) close(x);
      throw MakeSysError(env, SysError::Of(n == 0 ? ECONNRESET : errno, "recvmsg", "keeper reply"));
    }
    buf[n] = 0;
    int got = -1;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&rm); cm; cm = CMSG_NXTHDR(&rm, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < cnt; i++) {
        int x;
        std::memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        if (got < 0) got = x;
        else close(x);  // one fd per reply
      }
    }
    if (got >= 0) received.push_back(got);
    Napi::Object o = Napi::Object::New(env);
    o.Set("text", Napi::String::New(env, buf, static_cast<size_t>(n)));
    o.Set("fd", Napi::Number::New(env, got));
    out.Set(k, o);
    if (std::strncmp(buf, "FD ", 3) != 0) break;
  }
  return out;
}

Napi::Value TcpListenOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  bool v6 = info[2].As<Napi::Boolean>().Value();
  int backlog = info[3].As<Napi::Number>().Int32Value();
  int fd = OpenBoundSocket(env, host, port, v6, SOCK_STREAM, 0);
  if (listen(fd, backlog) != 0) {
    int e = errno;
    close(fd);
    throw MakeSysError(env, SysError::Of(e, "listen", host + ":" + std::to_string(port)));
  }
  return Napi::Number::New(env, fd);
}

}  // namespace podwire
