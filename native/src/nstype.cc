// nsType(path) -> number: what kind of namespace a path is, synchronously (open, one
// ioctl, close: microseconds, so not worth a pool thread).
//   > 0   the CLONE_NEW* type of the namespace (ioctl NS_GET_NSTYPE), e.g. CLONE_NEWNET
//   0     the path opens but is not a namespace handle (a regular file, a directory,
//         /dev/null: the ioctl fails with ENOTTY/EINVAL)
//   < 0   -errno of open(2) (-ENOENT: missing; -EACCES: not allowed)
// Used by the CNI plugin to check CNI_NETNS before handing its fd to the kernel.
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "exports.h"

namespace podwire {

Napi::Value NsType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "nsType(path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int type = ioctl(fd, NS_GET_NSTYPE);
  close(fd);
  return Napi::Number::New(env, type > 0 ? type : 0);
}

}  // namespace podwire
