/**
 * Rows that need the lab's edges: the "outside" namespace (the internet, behind the router) and
 * the authoritative DNS servers of the stub domains.
 *   - NodePort from outside: curl from the outside namespace to every node's IP:nodePort;
 *   - egress masquerade: a pod on each subnet fetches the outside server, which answers with the
 *     source address it saw: the pod's node IP, never the pod IP;
 *   - the stub domain: each record of a stub-domain server, dug from the client pod through the
 *     node-local DNS (kube-dns ConfigMap stubDomains → the server's namespace);
 *   - ExternalName: the CNAME (and its target's address) through the node-local DNS, then an HTTP
 *     request by the Service's name, which leaves the cluster to the outside server.
 */
import type { ServiceObject } from '../../k8s/types';
import type { LabContext, LabRow, RowGroup } from '../rows';
import type { PodRecord } from '../state';

const NODE_LOCAL_DNS = '169.254.20.10';

/** `server <name> <local> <method> <url> from <client>`: the name and the client address. */
function parseAnswer(body: string): { server: string; from: string } | undefined {
  const m = /server (\S+) \S+ \S+ \S+ from (?:::ffff:)?(\S+)/.exec(body);
  return m ? { server: m[1]!, from: m[2]! } : undefined;
}

/** The kube-dns ConfigMap's stubDomains (JSON object domain → [servers]), {} when absent or bad. */
function stubDomains(ctx: LabContext): Record<string, string[]> {
  const cm = ctx.configMaps.find((c) => c.meta.key === 'kube-system/kube-dns');
  try {
    const v = JSON.parse(cm?.data.stubDomains ?? '{}') as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string[]>) : {};
  } catch {
    return {};
  }
}

export const nodePortRows: RowGroup = {
  id: 'nodeport',
  requires: 'proxy',
  rows: (ctx) => {
    const o = ctx.outside;
    if (!o) return [];
    const rows: LabRow[] = [];
    for (const s of ctx.services.filter((x: ServiceObject) => x.type === 'NodePort' || x.type === 'LoadBalancer')) {
      const port = s.ports.find((p) => p.protocol === 'TCP' && p.nodePort);
      if (!port) continue;
      for (const n of ctx.state.nodes) {
        const argv = ['curl', '-s', '-m', '3', `http://${n.ip}:${port.nodePort}/`];
        rows.push({
          name: `NodePort from outside: ${s.meta.name}.${s.meta.namespace ?? 'default'} at ${n.name} ${n.ip}:${port.nodePort}`,
          command: ctx.execCommand({ name: 'outside' }, argv),
          run: async () => {
            const r = await ctx.execIn(o.ns, argv, { timeoutMs: 10_000 });
            const a = parseAnswer(r.stdout);
            return r.exitCode === 0 && a ? { ok: true, detail: `HTTP from ${a.server}` } : { ok: false, detail: `curl exit ${String(r.exitCode)}${r.stdout ? `: ${r.stdout.trim().slice(0, 50)}` : ''}` };
          },
        });
      }
    }
    return rows;
  },
};

export const egressRows: RowGroup = {
  id: 'egress',
  requires: 'overlay',
  rows: (ctx) => {
    const o = ctx.outside;
    if (!o) return [];
    const url = `http://${o.ip}:${o.port}/`;
    const argv = ['curl', '-s', '-m', '3', url];
    // The client, and one pod on a node of every other subnet.
    const from: PodRecord[] = [ctx.client];
    const subnets = new Set([ctx.node(ctx.client.node).subnet]);
    for (const p of ctx.state.pods) {
      const sn = ctx.node(p.node).subnet;
      if (p.ip && !subnets.has(sn)) {
        subnets.add(sn);
        from.push(p);
      }
    }
    return from.map((p) => {
      const node = ctx.node(p.node);
      return {
        name: `egress masquerade: ${p.name} → outside ${o.ip}:${o.port} (seen as ${node.name} ${node.ip})`,
        command: ctx.execCommand(p, argv),
        run: async () => {
          const r = await ctx.execInPod(p, argv, { timeoutMs: 10_000 });
          const a = parseAnswer(r.stdout);
          if (r.exitCode !== 0 || !a) return { ok: false, detail: `curl exit ${String(r.exitCode)}` };
          return a.from === node.ip ? { ok: true, detail: `outside saw ${a.from} (node IP), not ${p.ip}` } : { ok: false, detail: `outside saw ${a.from}, expected the node IP ${node.ip}` };
        },
      };
    });
  },
};

function dig(ctx: LabContext, label: string, type: string, name: string, expect: (lines: string[]) => boolean): LabRow {
  const argv = ['dig', `@${NODE_LOCAL_DNS}`, '+short', '+time=2', '+tries=2', type, name];
  return {
    name: label,
    command: ctx.execCommand(ctx.client, argv),
    run: async () => {
      const r = await ctx.execInPod(ctx.client, argv, { timeoutMs: 10_000 });
      const lines = r.stdout.trim().split('\n').filter((l) => l !== '' && !l.startsWith(';'));
      const ok = r.exitCode === 0 && expect(lines);
      return { ok, detail: lines.length > 0 ? lines.join(' | ').slice(0, 70) : `no answer (exit ${String(r.exitCode)})` };
    },
  };
}

export const stubDomainRows: RowGroup = {
  id: 'stub-domain',
  requires: 'dns',
  rows: (ctx) => {
    const rows: LabRow[] = [];
    const stubs = stubDomains(ctx);
    for (const d of ctx.state.dnsServers ?? []) {
      const servers = stubs[d.zone];
      if (!servers?.includes(d.ip)) continue;
      for (const [name, rec] of Object.entries(d.records)) {
        for (const a of rec.A?.length ? [rec.A] : []) rows.push(dig(ctx, `stub domain ${d.zone} (→ ${d.name} ${d.ip}): A ${name}`, 'A', name, (l) => a.every((x) => l.includes(x))));
        for (const txt of rec.TXT?.length ? [rec.TXT] : []) rows.push(dig(ctx, `stub domain ${d.zone} (→ ${d.name} ${d.ip}): TXT ${name}`, 'TXT', name, (l) => txt.every((x) => l.includes(JSON.stringify(x)))));
      }
    }
    return rows;
  },
};

export const externalNameRows: RowGroup = {
  id: 'externalname',
  requires: 'dns',
  rows: (ctx) => {
    const rows: LabRow[] = [];
    const zone = ctx.state.clusterDomain;
    for (const s of ctx.services.filter((x) => x.type === 'ExternalName' && x.externalName)) {
      const ns = s.meta.namespace ?? 'default';
      const fqdn = `${s.meta.name}.${ns}.svc.${zone}`;
      const target = s.externalName!.replace(/\.$/, '').toLowerCase();
      rows.push(dig(ctx, `ExternalName ${fqdn} → CNAME ${target}`, 'A', fqdn, (l) => l[0] === `${target}.`));
      // Where the target is a stub-domain name the lab serves with the outside's address, a request by
      // the Service's name leaves the cluster: name → CNAME → stub server → egress masquerade → outside.
      const o = ctx.outside;
      const served = (ctx.state.dnsServers ?? []).some((d) => d.records[target]?.A?.includes(o?.ip ?? ''));
      if (o && served && o.port === 80 && ctx.components.has('overlay')) {
        const argv = ['curl', '-s', '-m', '3', `http://${s.meta.name}.${ns}/`];
        const node = ctx.node(ctx.client.node);
        rows.push({
          name: `ExternalName by name: http://${s.meta.name}.${ns}/ (reaches the outside)`,
          command: ctx.execCommand(ctx.client, argv),
          run: async () => {
            const r = await ctx.execInPod(ctx.client, argv, { timeoutMs: 10_000 });
            const a = parseAnswer(r.stdout);
            return r.exitCode === 0 && a?.server === 'outside' ? { ok: true, detail: `outside answered, saw ${a.from}${a.from === node.ip ? ' (node IP)' : ''}` } : { ok: false, detail: `curl exit ${String(r.exitCode)}${a ? `, answered by ${a.server}` : ''}` };
          },
        });
      }
    }
    return rows;
  },
};
