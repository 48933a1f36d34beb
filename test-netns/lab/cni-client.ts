/**
 * Acting as the container runtime: run the CNI binary that podwired installed in the node's
 * CNI bin dir, inside the node namespace, over the CNI protocol (CNI_* environment, the
 * plugin's network config on stdin, the result JSON on stdout).
 *
 * The network config is built from the daemon's conflist the way a runtime does for each
 * plugin of a list: the plugin's object plus the list's `cniVersion` and `name`. Only the
 * first plugin (`podwire`) is run. A chained `portmap` (podwired chains it when the CNI bin
 * dir has one) only acts on runtime port mappings, which the demo has none of, so it is
 * skipped (and said so).
 */
import { readFileSync } from 'node:fs';
import { exec, netnsPath, type ExecResult } from '../harness';
import type { Podwired } from './podwired';

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: ({ type: string } & Record<string, unknown>)[];
}

export function readConflist(file: string): Conflist {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<Conflist>;
  if (typeof raw.cniVersion !== 'string' || typeof raw.name !== 'string' || !Array.isArray(raw.plugins) || raw.plugins.length === 0)
    throw new Error(`${file}: not a conflist (needs cniVersion, name and a non-empty plugins list)`);
  return raw as Conflist;
}

/**
 * The stdin for plugin `index` of a conflist (spec: list name and version injected; CHECK and
 * DEL also get the ADD result as `prevResult`).
 */
export function pluginConfig(conf: Conflist, index = 0, prevResult?: Record<string, unknown>): string {
  const plugin = conf.plugins[index];
  if (!plugin) throw new RangeError(`conflist ${conf.name} has no plugin #${index}`);
  return JSON.stringify({ ...plugin, cniVersion: conf.cniVersion, name: conf.name, ...(prevResult ? { prevResult } : {}) });
}

export interface CniCall {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  /** Pod namespace name; CNI_NETNS = /run/netns/<podNs>. */
  podNs: string;
  ifname?: string;
}

export interface CniOutcome {
  ok: boolean;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Parsed stdout when it is JSON (a result, or a CNI error object). */
  json: Record<string, unknown> | undefined;
  /** One line for the log and the table. */
  summary: string;
}

/** Run the installed CNI binary of `daemon`'s node with `call`, as the runtime would. */
export async function runInstalledCni(daemon: Podwired, stdin: string, call: CniCall): Promise<CniOutcome> {
  const env: Record<string, string> = {
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: netnsPath(call.podNs),
    CNI_IFNAME: call.ifname ?? 'eth0',
    CNI_PATH: daemon.binDir,
    // The shim forwards to the daemon on this socket (default /run/podwire/podwire.sock).
    PODWIRE_CONTROL_SOCKET: daemon.socket,
  };
  const r = await exec(daemon.ns, [daemon.binaryPath], { env, input: stdin, timeoutMs: 30_000 });
  return outcome(r);
}

function outcome(r: ExecResult): CniOutcome {
  let json: Record<string, unknown> | undefined;
  try {
    const v = JSON.parse(r.stdout) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>;
  } catch {
    /* DEL prints nothing */
  }
  const ok = r.exitCode === 0 && !r.timedOut;
  let summary: string;
  if (r.timedOut) summary = 'timed out';
  else if (ok) summary = 'exit 0';
  else if (json && 'code' in json) summary = `exit ${String(r.exitCode)}: CNI error ${String(json.code)} ${String(json.msg ?? '')}`;
  else summary = `exit ${String(r.exitCode)}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`;
  return { ok, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, json, summary };
}

/** The first IPv4 address of a CNI result (`10.244.1.2/24` → `{ ip: '10.244.1.2', cidr: '10.244.1.2/24' }`). */
export function resultIpv4(json: Record<string, unknown> | undefined): { ip: string; cidr: string; gateway: string | undefined } | undefined {
  const ips = json?.ips;
  if (!Array.isArray(ips)) return undefined;
  for (const e of ips as { address?: unknown; gateway?: unknown }[]) {
    if (typeof e.address !== 'string' || !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(e.address)) continue;
    return { ip: e.address.split('/')[0]!, cidr: e.address, gateway: typeof e.gateway === 'string' ? e.gateway : undefined };
  }
  return undefined;
}
