#pragma once
// A non-blocking, close-on-exec socket bound to host:port with SO_REUSEADDR + SO_REUSEPORT
// (IPV6_V6ONLY for IPv6): the DNS server's UDP sockets (udp_batch.cc) and TCP listeners
// (fd_pass.cc), so a successor podwired can bind the same address while this one drains.
#include <napi.h>

#include <string>

namespace podwire {

// Returns the fd; throws a JS TypeError for a bad address, a SysError otherwise. `rcvbuf` > 0 sets SO_RCVBUF.
int OpenBoundSocket(Napi::Env env, const std::string& host, int port, bool v6, int type, int rcvbuf);

}  // namespace podwire
