/** Small helpers for the kernel module's integration tests (on top of test-netns/harness). */
import { execOk } from '../harness';

export async function ipJson<T = Record<string, unknown>[]>(ns: string, args: string[]): Promise<T> {
  const out = await execOk(null, ['ip', '-n', ns, '-j', ...args]);
  return JSON.parse(out.trim() === '' ? '[]' : out) as T;
}

export async function bridgeJson<T = Record<string, unknown>[]>(ns: string, args: string[]): Promise<T> {
  const out = await execOk(null, ['bridge', '-n', ns, '-j', ...args]);
  return JSON.parse(out.trim() === '' ? '[]' : out) as T;
}

/** Kind-specific details of `ip -d -j link show dev X`. */
export interface IpLinkDetail {
  ifname: string;
  ifindex: number;
  mtu: number;
  address: string;
  flags: string[];
  master?: string;
  promiscuity?: number;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string; info_slave_data?: Record<string, unknown> };
}

export async function linkDetail(ns: string, dev: string): Promise<IpLinkDetail> {
  const [l] = await ipJson<IpLinkDetail[]>(ns, ['-d', 'link', 'show', 'dev', dev]);
  if (!l) throw new Error(`no link ${dev} in ${ns}`);
  return l;
}
