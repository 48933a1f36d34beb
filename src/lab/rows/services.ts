/**
 * Rows for the proxy and dns components, derived from the lab's Services: each TCP ClusterIP
 * Service by VIP (several requests, every answering pod named, so spreading shows), by DNS name
 * through the pod's search path, a UDP Service by VIP, and the DNS answers themselves (A, SRV for
 * a named port, a headless Service's endpoints) asked of the node-local server.
 */
import type { ServiceObject } from '../../k8s/types';
import type { LabContext, LabRow, RowGroup } from '../rows';

const NODE_LOCAL_DNS = '169.254.20.10';
const REQUESTS = 6;

function clusterIP(s: ServiceObject): string | undefined {
  const ip = s.clusterIPs[0];
  return ip && ip !== 'None' && !ip.includes(':') ? ip : undefined;
}

/** `server <pod> <ip> ...` is what the lab's HTTP server answers; the pod names that answered. */
function answeredBy(bodies: readonly string[]): string[] {
  const names = new Set<string>();
  for (const b of bodies) {
    const m = /server (\S+)/.exec(b);
    if (m) names.add(m[1]!);
  }
  return [...names].sort();
}

function httpRow(ctx: LabContext, label: string, url: string): LabRow {
  const argv = ['curl', '-s', '-m', '3', url];
  return {
    name: label,
    command: ctx.execCommand(ctx.client, argv),
    run: async () => {
      const bodies: string[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        const r = await ctx.execInPod(ctx.client, argv, { timeoutMs: 10_000 });
        if (r.exitCode !== 0) return { ok: false, detail: `request ${i + 1}/${REQUESTS}: curl exit ${String(r.exitCode)}` };
        bodies.push(r.stdout);
      }
      const by = answeredBy(bodies);
      return by.length > 0 ? { ok: true, detail: `${REQUESTS}/${REQUESTS} answered by ${by.join(', ')}` } : { ok: false, detail: 'no server named in the answers' };
    },
  };
}

function digRow(ctx: LabContext, label: string, type: string, name: string, expect: (lines: string[]) => boolean): LabRow {
  const argv = ['dig', `@${NODE_LOCAL_DNS}`, '+short', '+time=2', '+tries=2', type, name];
  return {
    name: label,
    command: ctx.execCommand(ctx.client, argv),
    run: async () => {
      const r = await ctx.execInPod(ctx.client, argv, { timeoutMs: 10_000 });
      const lines = r.stdout.trim().split('\n').filter((l) => l !== '');
      const ok = r.exitCode === 0 && expect(lines);
      return { ok, detail: lines.length > 0 ? lines.join(' | ').slice(0, 70) : `no answer (exit ${String(r.exitCode)})` };
    },
  };
}

export const serviceRows: RowGroup = {
  id: 'services',
  requires: 'proxy',
  rows: (ctx) => {
    const rows: LabRow[] = [];
    for (const s of ctx.services) {
      const ip = clusterIP(s);
      const ns = s.meta.namespace ?? 'default';
      // The lab's servers are HTTP and UDP echo; a DNS Service (kube-dns) is checked by the dns rows.
      if (!ip || s.type === 'ExternalName' || s.ports.some((p) => p.port === 53)) continue;
      const tcp = s.ports.find((p) => p.protocol === 'TCP');
      const udp = s.ports.find((p) => p.protocol === 'UDP');
      if (tcp) rows.push(httpRow(ctx, `Service ${s.meta.name}.${ns} by VIP ${ip}:${tcp.port}`, `http://${ip}:${tcp.port}/`));
      if (udp) {
        const argv = ['nc', '-u', '-w', '2', ip, String(udp.port)];
        const token = `podwire-lab-${Math.random().toString(36).slice(2, 10)}`;
        rows.push({
          name: `Service ${s.meta.name}.${ns} by VIP ${ip}:${udp.port}/udp`,
          command: `echo hello | ${ctx.execCommand(ctx.client, argv)}`,
          run: async () => {
            const r = await ctx.execInPod(ctx.client, argv, { input: `${token}\n`, timeoutMs: 10_000 });
            return r.stdout.includes(token) ? { ok: true, detail: 'datagram echoed through the VIP' } : { ok: false, detail: `no echo (exit ${String(r.exitCode)})` };
          },
        });
      }
    }
    return rows;
  },
};

export const dnsRows: RowGroup = {
  id: 'dns',
  requires: 'dns',
  rows: (ctx) => {
    const rows: LabRow[] = [];
    const zone = 'cluster.local';
    const proxied = ctx.components.has('proxy');
    for (const s of ctx.services) {
      const ns = s.meta.namespace ?? 'default';
      const fqdn = `${s.meta.name}.${ns}.svc.${zone}`;
      const ip = clusterIP(s);
      if (s.type === 'ExternalName') continue;
      if (ip) rows.push(digRow(ctx, `DNS A ${fqdn}`, 'A', fqdn, (l) => l.includes(ip)));
      else rows.push(digRow(ctx, `DNS A ${fqdn} (headless: its endpoints)`, 'A', fqdn, (l) => l.length > 0 && l.every((x) => /^10\.244\./.test(x))));
      const named = s.ports.find((p) => p.name !== '');
      if (named && ip) {
        const srv = `_${named.name}._${named.protocol.toLowerCase()}.${fqdn}`;
        rows.push(digRow(ctx, `DNS SRV ${srv}`, 'SRV', srv, (l) => l.some((x) => x.endsWith(` ${named.port} ${fqdn}.`))));
      }
      const tcp = s.ports.find((p) => p.protocol === 'TCP');
      if (ip && tcp && proxied && tcp.port === 80) rows.push(httpRow(ctx, `Service by name: http://${s.meta.name}.${ns}/ (search path)`, `http://${s.meta.name}.${ns}/`));
    }
    return rows;
  },
};
