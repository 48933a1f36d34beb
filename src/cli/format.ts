/** Renders GET /v1/status as a readable summary for `podwire status`. */
import type { ComponentSummary, DaemonStatus } from '../daemon/daemon';

function find(status: DaemonStatus, names: string[]): ComponentSummary | undefined {
  return status.components.find((c) => names.includes(c.name)) ?? status.components.find((c) => names.includes(c.feature));
}

function list(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

function num(v: unknown): string {
  return typeof v === 'number' ? String(v) : '-';
}

export function formatStatus(s: DaemonStatus): string {
  const out: string[] = [];
  const line = (k: string, v: string) => out.push(`${k.padEnd(18)} ${v}`);
  line('Node:', s.nodeName);
  line('Version:', s.version);
  line('Ready:', s.ready ? 'yes' : 'no');
  const objects = Object.entries(s.source.objects)
    .map(([k, n]) => `${n} ${k}`)
    .join(', ');
  line('Source:', `${s.source.name} (${s.source.synced ? 'synced' : 'not synced'})${objects ? `: ${objects}` : ''}`);
  const problems = s.source.problems ?? [];
  for (const p of problems.slice(0, 10)) {
    line('Source problem:', `${p.kind ?? '?'} ${p.key ?? ''}${p.field ? ` ${p.field}` : ''}: ${p.reason}`);
  }
  if (problems.length > 10) line('', `(${problems.length - 10} more)`);
  line('Subnet:', s.node && s.node.podCIDRs.length > 0 ? s.node.podCIDRs.join(', ') : '(no podCIDR assigned)');
  line('Node addresses:', s.node ? s.node.addresses.map((a) => `${a.address} (${a.type})`).join(', ') || '-' : '(Node not found)');
  line('Backend:', s.config.backend);
  line('Proxy mode:', s.config.proxyMode);
  line('Cluster CIDR:', s.config.clusterCIDR);
  line('Service CIDR:', s.config.serviceCIDR);
  line('Cluster domain:', s.config.clusterDomain);
  line('Enabled:', s.config.enable.join(', '));

  const cni = find(s, ['cni']);
  out.push('', 'CNI:');
  if (!cni) out.push('  (cni component not running)');
  else {
    const fp = cni.status.fastPath === true ? `fast path on ${String(cni.status.controlSocket ?? '?')}` : 'fast path off (every call in-process)';
    out.push(`  ${fp}, ${num(cni.status.pods)} pods`);
    const fallbacks = typeof cni.status.fallbacks === 'number' ? cni.status.fallbacks : 0;
    if (fallbacks > 0) {
      const last = cni.status.lastFallback as Record<string, unknown> | undefined;
      const when = last ? ` (last: ${String(last.command ?? '?')} at ${String(last.at ?? '?')}: ${String(last.reason ?? '?')} on ${String(last.socket ?? '?')})` : '';
      out.push(`  WARNING: ${fallbacks} CNI call(s) ran in-process because podwired did not answer${cni.status.fallbacksCapped ? ' (record full: more not counted)' : ''}${when}`);
    } else out.push('  0 fallbacks to the in-process path');
    const re = cni.status.reattachedTotal;
    if (typeof re === 'number' && re > 0) out.push(`  ${re} pod veth(s) put back on the bridge since start`);
  }

  const overlay = find(s, ['overlay']);
  out.push('', 'Peers:');
  if (!overlay) out.push('  (overlay component not running)');
  else {
    const peers = Array.isArray(overlay.status.peers) ? (overlay.status.peers as Record<string, unknown>[]) : [];
    if (typeof overlay.status.waitingFor === 'string') out.push(`  waiting: ${overlay.status.waitingFor}`);
    if (typeof overlay.status.ipv6PodsIn === 'string') out.push(`  IPv6 pod traffic rides in ${overlay.status.ipv6PodsIn}`);
    if (peers.length === 0) out.push('  (none)');
    for (const p of peers) {
      out.push(`  ${String(p.node ?? '?').padEnd(24)} ${list(p.podCIDRs).join(', ').padEnd(20)} via ${String(p.via ?? '?')}`);
      // Dual-stack: the IPv6 pod CIDR's own path (host-gw or DirectRouting route it via the v6 node IP).
      if (typeof p.via6 === 'string') out.push(`  ${''.padEnd(24)} ${'IPv6'.padEnd(20)} via ${p.via6}`);
    }
  }

  const proxy = find(s, ['proxy']);
  out.push('', 'Services:');
  if (!proxy) out.push('  (proxy component not running)');
  else out.push(`  ${num(proxy.status.services)} programmed, ${num(proxy.status.endpoints)} endpoints (${String(proxy.status.mode ?? s.config.proxyMode)})`);
  if (proxy && typeof proxy.status.virtualServers === 'number') {
    out.push(`  IPVS: ${num(proxy.status.virtualServers)} virtual servers, ${num(proxy.status.realServers)} real servers (${num(proxy.status.drainingRealServers)} draining), scheduler ${String(proxy.status.scheduler)}, ${num(proxy.status.vips)} VIPs on ${String(proxy.status.vipDevice)}`);
  }

  const dns = find(s, ['dns']);
  out.push('', 'DNS:');
  if (!dns) out.push(`  (dns component not running; configured listen ${s.config.dnsListen.join(', ')})`);
  else {
    out.push(`  listen ${list(dns.status.listen).join(', ') || s.config.dnsListen.join(', ')}`);
    out.push(`  ${num(dns.status.queries)} queries, ${num(dns.status.cacheHits)} cache hits, ${num(dns.status.cacheMisses)} misses, ${num(dns.status.errors)} errors`);
  }

  out.push('', 'Components:');
  for (const c of s.components) {
    const state = c.ready ? 'ready' : 'NOT READY';
    const last = c.lastSuccessfulSync ? `last ok ${c.lastSuccessfulSync}` : 'never synced';
    out.push(`  ${c.name.padEnd(16)} ${state.padEnd(10)} syncs ${c.syncs}, errors ${c.errors}, ${last}`);
    if (c.lastError && c.consecutiveFailures > 0) out.push(`  ${''.padEnd(16)} last error: ${c.lastError.message}`);
  }
  if (s.components.length === 0) out.push('  (none)');
  return out.join('\n') + '\n';
}
