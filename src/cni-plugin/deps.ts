/**
 * Everything runCni needs from the outside world, injected so that the in-process
 * path, the daemon's fast path and unit tests (fakes) run the same code.
 */
import type { Logger } from '../common/log';
import type { IptablesRunner, Link, NetnsRef, NetworkKernel, SysctlKernel } from '../kernel/types';
import type { NetnsCheck } from '../kernel/netns-check';
import type { IpamStore } from './ipam/store';
import type { NetConf } from './config';

export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
}

export interface CniDeps {
  /** rtnetlink in the node namespace (the one the plugin runs in). May be shared; never closed by runCni. */
  hostKernel(): Promise<NetworkKernel>;
  /** rtnetlink inside a pod namespace; runCni closes it when done. */
  openPodKernel(netns: NetnsRef): Promise<NetworkKernel>;
  /**
   * Is CNI_NETNS a network namespace handle? Missing (code 3) and "exists but is a regular
   * file, a directory, /dev/null or another namespace type" (code 4) are told apart.
   * Synchronous: an open + ioctl costs microseconds.
   */
  checkNetns(netns: NetnsRef): NetnsCheck;
  /** sysctls of the node namespace. */
  sysctl: SysctlKernel;
  /** sysctls inside a pod namespace (IPv6 DAD off on the pod interface, as the reference does). */
  podSysctl(netns: NetnsRef): SysctlKernel;
  /** iptables of the node namespace, per family. */
  iptables(family: 4 | 6): IptablesRunner;
  openStore(dataDir: string, network: string): IpamStore;
  /** Run another CNI plugin (delegated IPAM) with this env and stdin. */
  execPlugin(file: string, env: Record<string, string>, stdin: Buffer): Promise<ExecResult>;
  log: Logger;
  /**
   * Test hook: awaited after each named ADD step ('ipam', 'bridge', 'veth', 'pod', 'masq').
   * Unset in production; fault-injection tests use it to stop a daemon mid-ADD.
   */
  checkpoint?(step: string): Promise<void>;
  /**
   * Facts a long-lived caller (the daemon) already ensured, e.g. `gw pw0#7 10.244.1.1/24`
   * (bridge name + ifindex, so a recreated bridge is a new key) or `sysctl net.ipv4.ip_forward`.
   * Lets warm ADDs skip idempotent kernel round trips. Absent on the in-process path.
   */
  ensured?: Set<string>;
  /**
   * Bridges by name as last seen up (warm callers only). Lets an ADD create the veth
   * enslaved to the remembered ifindex without a lookup first; the ADD verifies it right
   * after (and redoes the node side with a fresh lookup if it was stale).
   */
  bridges?: Map<string, Link>;
  /** Parsed configs by exact stdin text (warm callers only). */
  parsed?: Map<string, NetConf>;
}
