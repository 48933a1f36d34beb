#include "netns_thread.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <system_error>
#include <thread>

namespace podwire {

SysError RunInNetns(const std::string& netnsPath, const std::function<SysError()>& work) {
  if (netnsPath.empty()) return work();
  SysError result;
  try {
    std::thread helper([&]() {
      int nsfd = open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0) {
        result = SysError::Of(errno, "open netns", netnsPath);
        return;
      }
      if (setns(nsfd, CLONE_NEWNET) != 0) {
        int e = errno;
        close(nsfd);
        result = SysError::Of(e, "setns", netnsPath);
        return;
      }
      close(nsfd);
      result = work();
      // The thread exits here: its namespace membership ends with it.
    });
    helper.join();
  } catch (const std::system_error& e) {
    return SysError::Of(e.code().value() != 0 ? e.code().value() : EAGAIN, "pthread_create");
  }
  return result;
}

}  // namespace podwire
