// The one place the addon switches network namespaces.
//
// setns(CLONE_NEWNET) moves only the calling thread. We never call it on the event-loop
// thread (everything else in the process would silently start acting on the other
// namespace) nor on a libuv pool thread (those are reused by fs/dns/crypto work, which
// would then run in the wrong namespace). Instead each call gets a dedicated std::thread
// that joins the namespace, runs the work, and exits, so the switch dies with the thread.
// Sockets created there stay bound to that namespace and work from any thread.
#pragma once
#include <functional>
#include <string>

#include "errors.h"

namespace podwire {

// Runs `work` in the network namespace at `netnsPath` (nsfs path such as /run/netns/x or
// /proc/<pid>/ns/net). An empty path runs `work` on the calling thread, in its current
// namespace. Blocks until the work is done. Errors opening/joining the namespace are
// returned with syscall "open netns"/"setns" and the path.
SysError RunInNetns(const std::string& netnsPath, const std::function<SysError()>& work);

}  // namespace podwire
