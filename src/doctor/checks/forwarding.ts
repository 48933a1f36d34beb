/** IP forwarding: without it the node drops every packet between pods and the underlay. */
import { finder, type Check, type Finding } from '../types';

const f = finder('ip-forward');

export const ipForward: Check = {
  id: 'ip-forward',
  title: 'IP forwarding',
  async run(env) {
    const keys = ['net.ipv4.ip_forward'];
    // Dual-stack nodes route IPv6 pod traffic too.
    if (env.status?.node?.podCIDRs.some((c) => c.includes(':'))) keys.push('net.ipv6.conf.all.forwarding');
    const out: Finding[] = [];
    for (const key of keys) {
      const v = (await env.kernel.sysctl.read(key).catch(() => '')).trim();
      if (v === '1') out.push(f.ok(key, '1: the node routes between pods and the underlay'));
      else out.push(f.fail(key, `${v || 'unreadable'}: pod traffic to other nodes and to Services on other nodes is dropped`, `sysctl -w ${key}=1 (and ${key}=1 in /etc/sysctl.d/)`));
    }
    return out;
  },
};
