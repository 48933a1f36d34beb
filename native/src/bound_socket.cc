#include "bound_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "errors.h"

namespace podwire {

int OpenBoundSocket(Napi::Env env, const std::string& host, int port, bool v6, int type, int rcvbuf) {
  int fd = socket(v6 ? AF_INET6 : AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw MakeSysError(env, SysError::Of(errno, "socket"));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    int e = errno;
    close(fd);
    throw MakeSysError(env, SysError::Of(e, "setsockopt(SO_REUSEPORT)"));
  }
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof(ss));
  socklen_t sl;
  bool ok;
  if (v6) {
    sockaddr_in6* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    ok = inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) == 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    sl = sizeof(sockaddr_in6);
  } else {
    sockaddr_in* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    ok = inet_pton(AF_INET, host.c_str(), &a->sin_addr) == 1;
    sl = sizeof(sockaddr_in);
  }
  if (!ok) {
    close(fd);
    throw Napi::TypeError::New(env, std::string("bad IPv") + (v6 ? "6" : "4") + " address " + host);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) != 0) {
    int e = errno;
    close(fd);
    throw MakeSysError(env, SysError::Of(e, "bind", host + ":" + std::to_string(port)));
  }
  return fd;
}

}  // namespace podwire
