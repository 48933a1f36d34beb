/**
 * Podwire namespace lab harness — the API for root-only integration tests in test-netns/.
 *
 *   import { labTest } from '../harness';
 *
 *   labTest('pods on two nodes can ping', { prefix: 'pwx' }, async (t, lab) => {
 *     const ul = await lab.addUnderlay();                  // ns <id>-ul with bridge br0
 *     const n1 = await lab.addNode(ul);                     // ns <id>-n1, eth0 198.18.0.1/24, ip_forward=1
 *     const n2 = await lab.addNode(ul);                     // ns <id>-n2, eth0 198.18.0.2/24
 *     const p1 = await lab.addPod();                        // bare ns <id>-p1 (lo up) — give it to the CNI plugin,
 *     await lab.wirePod(p1, n1, { address: '10.244.1.2', gateway: '10.244.1.1' }); // ...or wire it by hand
 *     const r = await ping(p1, n2.ip);                      // exec inside a namespace, no shell
 *     t.ok(r.ok, r.output);
 *     const srv = lab.spawn(n2.ns, ['nc', '-lk', '-p', '8080']);  // background process, killed at cleanup
 *     await lab.execOk(n2.ns, ['ip', 'route', 'add', '10.244.1.0/24', 'via', n1.ip]);
 *   });
 *
 * What labTest does around the body: probes `requires` kernel features (skips with the reason
 * if missing, and when not root), fails unless this process is in the initial network namespace
 * (rootNetnsCheck), snapshots the root network namespace, creates a Lab whose
 * namespaces are named `<prefix>-<pid>-<seq>-<role>`, runs the body, ALWAYS removes the lab
 * (processes first, then namespaces), then snapshots again and fails the test on any change of
 * the root namespace (links, addresses, routes, rules, iptables/ip6tables (nft + legacy),
 * nft ruleset, ip_forward/ipv6 forwarding, net.ipv4.conf.* and net.bridge.* sysctls, configured
 * neighbour entries, new conntrack entries in the test ranges), printing the diff. Leftovers of a crashed earlier
 * run of the same prefix are swept first. process exit and SIGINT/SIGTERM/SIGHUP also clean up.
 *
 * Functions:
 *   labTest(name, {prefix, requires?, guard?, timeout?, skip?}, fn(t, lab))  tap subtest with Lab + guard
 *   withLab(prefix, fn(lab), {guard?})     same for plain scripts; throws RootNamespaceChangedError
 *   Lab.create(prefix)                     a Lab without guard (you call lab.cleanup())
 *     lab.addNetns(role, {loUp?, forwarding?}) -> ns name
 *     lab.addUnderlay({role?, bridge?, mtu?}) -> Underlay {ns, bridge}
 *     lab.addNode(underlay, {role?, address?: 'A.B.C.D/len', ifname?, mtu?}) -> LabNode {ns, ip, cidr, ifname, index}
 *     lab.addPod(role?) -> ns name (bare namespace, lo up)
 *     lab.wirePod(podNs, node, {address, gateway, podIfName?, hostIfName?, mtu?}) -> WiredPod
 *     lab.spawn(ns, argv) -> BackgroundProcess {pid, stdout, stderr, waitForOutput(re), stop(), exited}
 *     lab.exec / lab.execOk / lab.ip(ns, args)   (same as the free functions below)
 *     lab.cleanup()                          idempotent
 *   exec(ns, argv, {timeoutMs?, input?, env?}) -> {stdout, stderr, exitCode, signal, timedOut}
 *   execOk(ns, argv, opts) -> stdout, throws LabCommandError on non-zero exit/timeout
 *   ip(ns, args) = execOk of `ip -n ns args`
 *   ping(ns, address, {count?, waitS?}) -> {ok, output}
 *   ns = a namespace name from the lab, or null for this process's own namespace (read-only use only!)
 *   netnsPath(ns) -> '/run/netns/<ns>' (CNI_NETNS for the CNI plugin)
 *   sweepStale(prefix) / listNetns(prefix) / removeNetns(ns)
 *   snapshot(target?) / diffSnapshots(a, b) / formatDiff(d) / Guard.start(target?) / withGuard(fn, target?)
 *   probeFeature(f) / missingFeatures([f...])  kernel features: veth bridge vxlan ifb dummy ipip wireguard ipvs
 *                                              nftables iptables iptables-legacy conntrack ipset
 *   rootNetnsCheck() -> {inRoot: true/false/undefined, method, detail}   (kthreadd's netns, or the
 *     fixed init_net inode on Linux >= 6.18); inRootNetns() = its inRoot
 *
 * Rules: every namespace you create must come from a Lab (so cleanup and sweeping work). Never
 * pass ns=null to a command that changes anything. See docs/testing.md.
 */
export { exec, execOk, ip, LabCommandError, DEFAULT_EXEC_TIMEOUT_MS, type ExecOptions, type ExecResult, type NsName } from './exec';
export { BackgroundProcess, type SpawnOptions, type ExitInfo } from './process';
export {
  Lab,
  sweepStale,
  listNetns,
  removeNetns,
  netnsPath,
  openLabs,
  NETNS_DIR,
  type LabOptions,
  type NetnsOptions,
  type Underlay,
  type UnderlayOptions,
  type LabNode,
  type NodeOptions,
  type WirePodOptions,
  type WiredPod,
} from './lab';
export {
  snapshot,
  diffSnapshots,
  formatDiff,
  Guard,
  withGuard,
  RootNamespaceChangedError,
  inRootNetns,
  rootNetnsCheck,
  notInRootNetnsMessage,
  isKernelThreadStat,
  selfNetnsInode,
  INIT_NET_INODE,
  INIT_NET_INODE_SINCE,
  TEST_RANGES,
  normaliseNeighbours,
  normaliseConntrack,
  normaliseSysctlTrees,
  type RootNetnsCheck,
  type RootNetnsIo,
  type Snapshot,
  type SectionDiff,
  type GuardTarget,
} from './guard';
export { probeFeature, missingFeatures, type KernelFeature } from './features';
export { labTest, withLab, cannotRunReason, type LabTestOptions, type LabTestFn, type WithLabOptions } from './run';
export { ping, type PingOptions, type PingResult } from './net';
