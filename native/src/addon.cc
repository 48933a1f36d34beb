// Module entry. The typed JS API lives in src/kernel/native.ts; these are raw bindings.
#include <napi.h>

#include "exports.h"

namespace podwire {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openNetlink", Napi::Function::New(env, OpenNetlink, "openNetlink"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("netlinkBatch", Napi::Function::New(env, NetlinkBatch, "netlinkBatch"));
  exports.Set("netlinkRequest", Napi::Function::New(env, NetlinkRequest, "netlinkRequest"));
  exports.Set("sysctl", Napi::Function::New(env, Sysctl, "sysctl"));
  exports.Set("flockTry", Napi::Function::New(env, FlockTry, "flockTry"));
  exports.Set("flockWait", Napi::Function::New(env, FlockWait, "flockWait"));
  exports.Set("funlock", Napi::Function::New(env, Funlock, "funlock"));
  exports.Set("nsType", Napi::Function::New(env, NsType, "nsType"));
  exports.Set("udpOpen", Napi::Function::New(env, UdpOpen, "udpOpen"));
  exports.Set("udpServe", Napi::Function::New(env, UdpServe, "udpServe"));
  exports.Set("udpSendTo", Napi::Function::New(env, UdpSendTo, "udpSendTo"));
  exports.Set("udpStats", Napi::Function::New(env, UdpStats, "udpStats"));
  exports.Set("udpClose", Napi::Function::New(env, UdpClose, "udpClose"));
  exports.Set("seqpacketConnect", Napi::Function::New(env, SeqpacketConnect, "seqpacketConnect"));
  exports.Set("seqpacketRequest", Napi::Function::New(env, SeqpacketRequest, "seqpacketRequest"));
  exports.Set("tcpListenOpen", Napi::Function::New(env, TcpListenOpen, "tcpListenOpen"));
  exports.Set("ethtoolTxCsum", Napi::Function::New(env, EthtoolTxCsum, "ethtoolTxCsum"));
  return exports;
}

NODE_API_MODULE(podwire_native, Init)

}  // namespace podwire
