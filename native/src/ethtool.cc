// ethtoolTxCsum(netnsPath: string | null, ifname: string, on: boolean | null) -> Promise<boolean>
// Reads (on null) or sets a device's TX checksum offload (every NETIF_F_CSUM_MASK feature,
// `ethtool -K <dev> tx on|off`) with the SIOCETHTOOL ioctl's ETHTOOL_GTXCSUM/STXCSUM
// commands, then resolves with the state the kernel reports afterwards. The ioctl socket
// is opened on a thread inside the namespace (netns_thread.h), so the name resolves there.
// The legacy one-feature commands are used on purpose: they need no feature-string table
// (ETHTOOL_GSSET_INFO / GFEATURES) and the kernel maps them onto the same feature bits.
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "exports.h"
#include "netns_thread.h"
#include "promise_worker.h"

namespace podwire {
namespace {

class TxCsumWorker : public PromiseWorker {
 public:
  TxCsumWorker(Napi::Env env, std::string netns, std::string ifname, int set)
      : PromiseWorker(env, "podwire:ethtoolTxCsum"), netns_(std::move(netns)), ifname_(std::move(ifname)), set_(set) {}

 protected:
  SysError Run() override {
    return RunInNetns(netns_, [this]() {
      int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd < 0) return SysError::Of(errno, "socket");
      SysError err = Do(fd);
      close(fd);
      return err;
    });
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Boolean::New(env, on_); }

 private:
  SysError Call(int fd, uint32_t cmd, uint32_t* data) {
    ethtool_value v{};
    v.cmd = cmd;
    v.data = data ? *data : 0;
    ifreq ifr{};
    strncpy(ifr.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
    ifr.ifr_data = reinterpret_cast<char*>(&v);
    if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) return SysError::Of(errno, cmd == ETHTOOL_STXCSUM ? "ETHTOOL_STXCSUM" : "ETHTOOL_GTXCSUM", ifname_);
    if (data) *data = v.data;
    return SysError();
  }

  SysError Do(int fd) {
    if (set_ >= 0) {
      uint32_t value = set_ ? 1 : 0;
      SysError e = Call(fd, ETHTOOL_STXCSUM, &value);
      if (e.failed()) return e;
    }
    uint32_t now = 0;
    SysError e = Call(fd, ETHTOOL_GTXCSUM, &now);
    if (e.failed()) return e;
    on_ = now != 0;
    return SysError();
  }

  std::string netns_, ifname_;
  int set_;
  bool on_ = false;
};

}  // namespace

Napi::Value EthtoolTxCsum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netns;
  if (info.Length() > 0 && info[0].IsString()) netns = info[0].As<Napi::String>().Utf8Value();
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(env, "ethtoolTxCsum(netnsPath, ifname, on)");
  std::string ifname = info[1].As<Napi::String>().Utf8Value();
  if (ifname.empty() || ifname.size() >= IFNAMSIZ || ifname.find('/') != std::string::npos)
    throw Napi::TypeError::New(env, "invalid interface name: " + ifname);
  int set = info.Length() > 2 && info[2].IsBoolean() ? (info[2].As<Napi::Boolean>().Value() ? 1 : 0) : -1;
  auto* worker = new TxCsumWorker(env, netns, ifname, set);
  return worker->Queue();
}

}  // namespace podwire
