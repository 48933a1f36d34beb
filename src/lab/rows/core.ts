/**
 * The rows that hold today (podwired with its cni component): every node's `podwire status`,
 * pod ↔ pod on one node and across nodes (same subnet, and through the router), TCP with nc
 * (an HTTP request to the pod's server) and UDP (the echo server).
 *
 * Cross-node rows go over podwired's overlay when it has one. Until the overlay component
 * lands, `lab up` adds plain routes itself (a clearly-labelled fallback, see fallbackRoutes in
 * the state); the rows then say `[lab fallback routes]` so nobody mistakes them for the overlay.
 */
import type { LabContext, LabRow, RowGroup } from '../rows';
import type { PodRecord } from '../state';

function pingRow(ctx: LabContext, label: string, from: PodRecord, to: PodRecord): LabRow {
  const argv = ['ping', '-n', '-c', '2', '-i', '0.2', '-W', '2', to.ip!];
  return {
    name: `${label}: ${from.name} → ${to.name}`,
    command: ctx.execCommand(from, argv),
    run: async () => {
      const r = await ctx.execInPod(from, argv, { timeoutMs: 10_000 });
      const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
      return r.exitCode === 0 ? { ok: true, detail: `${to.ip} replies${rtt ? `, rtt ${rtt} ms` : ''}` } : { ok: false, detail: `${to.ip}: no reply` };
    },
  };
}

function tcpRow(ctx: LabContext, label: string, from: PodRecord, to: PodRecord, port: number): LabRow {
  const argv = ['nc', '-N', '-w', '3', to.ip!, String(port)];
  return {
    name: `${label}: ${from.name} → ${to.name}:${port}`,
    command: `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | ${ctx.execCommand(from, argv)}`,
    run: async () => {
      const r = await ctx.execInPod(from, argv, { input: 'GET / HTTP/1.0\r\n\r\n', timeoutMs: 10_000 });
      const ok = r.exitCode === 0 && r.stdout.includes(`server ${to.name}`);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(r.stdout)?.[1];
      return ok ? { ok, detail: `HTTP ${status ?? '?'} from ${to.name}` } : { ok, detail: `exit ${String(r.exitCode)}: ${(r.stderr || r.stdout).trim().split('\n')[0]?.slice(0, 60) || 'no answer'}` };
    },
  };
}

function udpRow(ctx: LabContext, label: string, from: PodRecord, to: PodRecord, port: number): LabRow {
  const argv = ['nc', '-u', '-w', '2', to.ip!, String(port)];
  const token = `podwire-lab-${Math.random().toString(36).slice(2, 10)}`;
  return {
    name: `${label}: ${from.name} → ${to.name}:${port}/udp`,
    command: `echo hello | ${ctx.execCommand(from, argv)}`,
    run: async () => {
      const r = await ctx.execInPod(from, argv, { input: `${token}\n`, timeoutMs: 10_000 });
      const ok = r.stdout.includes(token);
      return ok ? { ok, detail: 'datagram echoed' } : { ok, detail: `no echo (exit ${String(r.exitCode)})` };
    },
  };
}

export const nodeStatusRows: RowGroup = {
  id: 'nodes',
  rows: (ctx) =>
    ctx.state.daemons.map((d) => {
      const node = ctx.node(d.node);
      return {
        name: `podwire status: ${d.node}`,
        command: ctx.statusCommand(node),
        run: async () => {
          const r = await ctx.podwire(['status', '--socket', d.socket]);
          const subnet = new RegExp(`Subnet:\\s+${node.podCIDR.replace(/\./g, '\\.')}`).test(r.stdout);
          const ok = r.exitCode === 0 && subnet;
          return { ok, detail: ok ? `ready, subnet ${node.podCIDR}` : `exit ${String(r.exitCode)}${subnet ? '' : ', own subnet missing'}: ${r.stderr.trim().slice(0, 60)}` };
        },
      };
    }),
};

export const podToPodRows: RowGroup = {
  id: 'pod-to-pod',
  rows: (ctx) => {
    const c = ctx.client;
    const cn = ctx.node(c.node);
    const others = ctx.state.pods.filter((p) => p !== c && p.ip);
    const http = (p: PodRecord): number | undefined => p.servers.find((s) => s.kind === 'http')?.port;
    const sameNode = others.find((p) => p.node === c.node);
    const sameSubnet = others.find((p) => p.node !== c.node && ctx.node(p.node).subnet === cn.subnet);
    const routed = others.find((p) => ctx.node(p.node).subnet !== cn.subnet);
    const fb = ctx.state.fallbackRoutes.length > 0 ? ' [lab fallback routes]' : '';
    const rows: LabRow[] = [];
    if (sameNode) rows.push(pingRow(ctx, 'pod ↔ pod, same node', c, sameNode));
    if (sameSubnet) rows.push(pingRow(ctx, `pod ↔ pod, across nodes${fb}`, c, sameSubnet));
    if (routed) rows.push(pingRow(ctx, `pod ↔ pod, across subnets${fb}`, c, routed));
    const tcpSame = others.find((p) => p.node === c.node && http(p));
    if (tcpSame) rows.push(tcpRow(ctx, 'TCP (nc), same node', c, tcpSame, http(tcpSame)!));
    const tcpFar = [routed, sameSubnet, ...others].find((p) => p && p.node !== c.node && http(p));
    if (tcpFar) rows.push(tcpRow(ctx, `TCP (nc), across nodes${fb}`, c, tcpFar, http(tcpFar)!));
    const udp = others.find((p) => p.servers.some((s) => s.kind === 'udp-echo'));
    if (udp) rows.push(udpRow(ctx, `UDP echo (nc)${udp.node === c.node ? ', same node' : `, across nodes${fb}`}`, c, udp, udp.servers.find((s) => s.kind === 'udp-echo')!.port));
    return rows;
  },
};
