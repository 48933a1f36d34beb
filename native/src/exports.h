#pragma once
#include <napi.h>

namespace podwire {

// netlink_socket.cc
Napi::Value OpenNetlink(const Napi::CallbackInfo& info);
Napi::Value CloseFd(const Napi::CallbackInfo& info);
// netlink_io.cc
Napi::Value NetlinkBatch(const Napi::CallbackInfo& info);
Napi::Value NetlinkRequest(const Napi::CallbackInfo& info);
// sysctl.cc
Napi::Value Sysctl(const Napi::CallbackInfo& info);
// flock.cc
Napi::Value FlockTry(const Napi::CallbackInfo& info);
Napi::Value FlockWait(const Napi::CallbackInfo& info);
Napi::Value Funlock(const Napi::CallbackInfo& info);
// udp_batch.cc
Napi::Value UdpOpen(const Napi::CallbackInfo& info);
Napi::Value UdpServe(const Napi::CallbackInfo& info);
Napi::Value UdpSendTo(const Napi::CallbackInfo& info);
Napi::Value UdpStats(const Napi::CallbackInfo& info);
Napi::Value UdpClose(const Napi::CallbackInfo& info);
// nstype.cc
Napi::Value NsType(const Napi::CallbackInfo& info);
// fd_pass.cc
Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info);
Napi::Value SeqpacketRequest(const Napi::CallbackInfo& info);
Napi::Value TcpListenOpen(const Napi::CallbackInfo& info);
// ethtool.cc
Napi::Value EthtoolTxCsum(const Napi::CallbackInfo& info);

}  // namespace podwire
