/**
 * `podwire doctor`: what a check sees (DoctorEnv) and what it says (Finding).
 * Every host access goes through DoctorEnv, so the checks are unit-tested with the kernel
 * fakes and a scripted env (doctor.test.ts), and run for real by env.ts.
 */
import type { DaemonStatus } from '../daemon/daemon';
import type { Kernel } from '../kernel';
import type { IpvsService } from '../kernel/ipvs/codec';
import type { ExpectedServices } from '../proxy/expected';

export type Level = 'ok' | 'warn' | 'FAIL';

export interface Finding {
  /** Stable id of the check that produced it (`--json` consumers key on it). */
  check: string;
  /** What was looked at, e.g. `ip_forward` or `peer node-b`. */
  subject: string;
  level: Level;
  /** What was found, in plain words. */
  detail: string;
  /** One line saying how to fix it (warn and FAIL only). */
  fix?: string;
}

export interface RunOutput {
  code: number;
  stdout: string;
  stderr: string;
}

export interface DoctorEnv {
  kernel: Pick<Kernel, 'net' | 'sysctl' | 'nft' | 'iptables'>;
  /** podwired's GET /v1/status, or undefined with the reason in statusError. */
  status: DaemonStatus | undefined;
  statusError: string | undefined;
  cniConfDir: string;
  /** `uname -r`. */
  kernelRelease: string;
  readFile(path: string): Promise<string | undefined>;
  listDir(path: string): Promise<string[] | undefined>;
  exists(path: string): Promise<boolean>;
  /** Runs argv in the node's namespace; code 127 when the program is not installed. */
  run(argv: readonly string[]): Promise<RunOutput>;
  /** One ICMP echo to address (raw-socket), ok false with the reason when no reply came. */
  ping(address: string): Promise<{ ok: boolean; detail: string }>;
  /** The dns component's query counter from a fresh podwired status (undefined without one): tells whether our server answered. */
  dnsQueries(): Promise<number | undefined>;
  /**
   * podwired's `GET /v1/proxy/services`: every Service the proxy should have programmed, from the
   * cluster state. undefined when podwired does not serve it (404: no proxy, or an older podwired).
   */
  proxyServices(): Promise<ExpectedServices | { error: string } | undefined>;
  /** The IPVS virtual servers of the node's namespace; throws when the kernel has no ip_vs. */
  ipvsServices(): Promise<IpvsService[]>;
  /** One A query over UDP. */
  dnsQuery(server: string, port: number, name: string): Promise<{ rcode: string; addresses: string[] } | { error: string }>;
}

export interface Check {
  id: string;
  title: string;
  run(env: DoctorEnv): Promise<Finding[]>;
}

/** A finding builder bound to one check id. */
export function finder(check: string): {
  ok(subject: string, detail: string): Finding;
  warn(subject: string, detail: string, fix: string): Finding;
  fail(subject: string, detail: string, fix: string): Finding;
} {
  return {
    ok: (subject, detail) => ({ check, subject, level: 'ok', detail }),
    warn: (subject, detail, fix) => ({ check, subject, level: 'warn', detail, fix }),
    fail: (subject, detail, fix) => ({ check, subject, level: 'FAIL', detail, fix }),
  };
}

/** A component's status object from podwired's status, if that component runs. */
export function componentStatus(env: DoctorEnv, name: string): Record<string, unknown> | undefined {
  return env.status?.components.find((c) => c.name === name || c.feature === name)?.status;
}
