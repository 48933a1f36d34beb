/**
 * The node-local DNS server answers, and the kube-dns Service VIP reaches it. The VIP is
 * looked up from our own server (kube-dns.kube-system.svc.<domain>); it is "steered" when it
 * is a local address of this node (--dns-listen) — otherwise queries to it leave the node for
 * the kube-dns endpoints (if any), which is what docs/dns.md tells operators to avoid.
 */
import { componentStatus, finder, type Check, type Finding } from '../types';

const f = finder('dns');

export function splitHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  return m ? { host: m[1]!, port: Number(m[2]) } : undefined;
}

export const dns: Check = {
  id: 'dns',
  title: 'cluster DNS',
  async run(env) {
    const st = componentStatus(env, 'dns');
    if (!env.status) return [f.warn('dns', `no podwired status (${env.statusError ?? '?'}), DNS not checked`, 'start podwired, or pass --socket')];
    if (!st) return [f.ok('dns', 'the dns component is not enabled on this node (CoreDNS or another server answers)')];
    const domain = env.status.config.clusterDomain;
    const listen = (Array.isArray(st.listen) && st.listen.length ? (st.listen as string[]) : env.status.config.dnsListen).map((a) => ({ text: a, hp: splitHostPort(a) }));
    const out: Finding[] = [];
    const name = `kubernetes.default.svc.${domain}`;
    let first: { host: string; port: number } | undefined;
    for (const { text, hp } of listen) {
      if (!hp) continue;
      const host = hp.host === '0.0.0.0' ? '127.0.0.1' : hp.host === '::' ? '::1' : hp.host;
      const r = await env.dnsQuery(host, hp.port, name);
      if ('error' in r) out.push(f.fail(`server ${text}`, `no answer to ${name} A (${r.error})`, 'check the dns component in podwire status and podwired\'s log; is the address on lo (ip addr show lo)?'));
      else if (r.rcode === 'NOERROR' && r.addresses.length > 0) {
        out.push(f.ok(`server ${text}`, `answers ${name} A = ${r.addresses.join(', ')}`));
        first ??= { host, port: hp.port };
      } else if (r.rcode === 'NXDOMAIN') {
        // Authoritative for the cluster domain, just no default/kubernetes Service (a lab, a manifest folder).
        out.push(f.ok(`server ${text}`, `answers (${name}: NXDOMAIN, no default/kubernetes Service in the cluster state)`));
        first ??= { host, port: hp.port };
      } else out.push(f.fail(`server ${text}`, `${name} A answered ${r.rcode} with ${r.addresses.length} addresses`, 'podwired has not synced the cluster state yet (SERVFAIL until it has): podwire status'));
    }
    if (!first) return out;
    const vipName = `kube-dns.kube-system.svc.${domain}`;
    const v = await env.dnsQuery(first.host, first.port, vipName);
    if ('error' in v || v.addresses.length === 0) {
      out.push(f.ok('kube-dns VIP', `no kube-dns Service (${'error' in v ? v.error : v.rcode}): pods must use ${listen[0]?.hp?.host ?? 'the node-local address'} as their nameserver`));
      return out;
    }
    const local = new Set((await env.kernel.net.listAddresses().catch(() => [])).map((a) => String(a.cidr).split('/')[0]));
    for (const vip of v.addresses) {
      // Who answered: podwired's query counter moves only when its server got the query.
      const before = await env.dnsQueries();
      const r = await env.dnsQuery(vip, 53, name);
      const after = await env.dnsQueries();
      const ours = before !== undefined && after !== undefined && after > before;
      const isLocal = local.has(vip);
      if ('error' in r) {
        if (isLocal) out.push(f.fail(`kube-dns VIP ${vip}`, `a local address, but no answer (${r.error}): the proxy's Service rules take the VIP before it reaches lo (a kube-dns Service without endpoints is rejected there)`, `point kubelet's clusterDNS at ${first.host} (docs/dns.md)`));
        else out.push(f.warn(`kube-dns VIP ${vip}`, `not steered to this node's server, and no answer (${r.error})`, `point kubelet's clusterDNS at ${first.host}, or give kube-dns endpoints (docs/dns.md)`));
      } else if (ours) out.push(f.ok(`kube-dns VIP ${vip}`, 'steered to the node-local server (podwired counted the query)'));
      else out.push(f.warn(`kube-dns VIP ${vip}`, `answered by ${before === undefined ? 'a server podwired cannot vouch for' : 'the kube-dns endpoints, not this node\'s server'}: pods using the VIP leave the node for DNS`, `point kubelet's clusterDNS at ${first.host} (the proxy does not steer the VIP yet, docs/dns.md)`));
    }
    return out;
  },
};
