/** IP forwarding: without it the node drops every packet between pods and the underlay. */
import { finder, type Check } from '../types';

const f = finder('ip-forward');

export const ipForward: Check = {
  id: 'ip-forward',
  title: 'IP forwarding',
  async run(env) {
    const v = (await env.kernel.sysctl.read('net.ipv4.ip_forward').catch(() => '')).trim();
    if (v === '1') return [f.ok('net.ipv4.ip_forward', '1: the node routes between pods and the underlay')];
    return [f.fail('net.ipv4.ip_forward', `${v || 'unreadable'}: pod traffic to other nodes and to Services on other nodes is dropped`, 'sysctl -w net.ipv4.ip_forward=1 (and net.ipv4.ip_forward=1 in /etc/sysctl.d/)')];
  },
};
