import t from 'tap';
import type { DaemonStatus } from '../daemon/daemon';
import { formatStatus } from './format';

/** One component's entry in the daemon's status, ready and synced once. */
const component = <F extends string>(feature: F, status: Record<string, unknown>) => ({
  name: feature,
  feature,
  ready: true,
  syncs: 1,
  errors: 0,
  consecutiveFailures: 0,
  lastSuccessfulSync: undefined,
  lastSyncDurationMs: undefined,
  lastError: undefined,
  status,
});

const base: DaemonStatus = {
  version: '0.1.0',
  nodeName: 'n1',
  ready: true,
  source: { name: 'manifests', synced: true, objects: { Node: 2, Service: 3 }, problems: [] },
  node: { podCIDRs: ['10.244.1.0/24'], addresses: [{ type: 'InternalIP', address: '198.18.0.1' }] },
  config: { backend: 'vxlan', proxyMode: 'nftables', clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/12', clusterDomain: 'cluster.local', enable: ['overlay', 'proxy', 'dns'], dnsListen: ['169.254.20.10:53'] },
  components: [],
  startedAt: '2026-01-01T00:00:00.000Z',
};

t.test('summary with only the CNI installer', async (t) => {
  const out = formatStatus(base);
  t.match(out, /Node:\s+n1/);
  t.match(out, /Subnet:\s+10\.244\.1\.0\/24/);
  t.match(out, /Source:\s+manifests \(synced\): 2 Node, 3 Service/);
  t.match(out, /overlay component not running/);
  t.match(out, /proxy component not running/);
  t.match(out, /dns component not running/);
  t.match(out, /cni component not running/);
});

t.test('the cni component: fast path, pods, fallbacks never silent', async (t) => {
  const cni = (status: Record<string, unknown>) => component('cni', status);
  const ok = formatStatus({ ...base, components: [cni({ fastPath: true, controlSocket: '/run/x.sock', pods: 2, fallbacks: 0 })] });
  t.match(ok, /fast path on \/run\/x\.sock, 2 pods/);
  t.match(ok, /0 fallbacks/);
  const bad = formatStatus({
    ...base,
    components: [cni({ fastPath: true, controlSocket: '/run/x.sock', pods: 2, fallbacks: 3, lastFallback: { command: 'ADD', at: 'T', reason: 'Connection refused', socket: '/run/x.sock' }, reattachedTotal: 2 })],
  });
  t.match(bad, /WARNING: 3 CNI call\(s\) ran in-process because podwired did not answer \(last: ADD at T: Connection refused on \/run\/x\.sock\)/);
  t.match(bad, /2 pod veth\(s\) put back on the bridge/);
});

t.test('summary with overlay, proxy and dns status', async (t) => {
  const comp = (name: 'overlay' | 'proxy' | 'dns', status: Record<string, unknown>) => ({
    name,
    feature: name,
    ready: true,
    syncs: 3,
    errors: 1,
    consecutiveFailures: 0,
    lastSuccessfulSync: '2026-01-01T00:00:01.000Z',
    lastSyncDurationMs: 4,
    lastError: undefined,
    status,
  });
  const out = formatStatus({
    ...base,
    components: [
      comp('overlay', { peers: [{ node: 'n2', podCIDRs: ['10.244.2.0/24'], via: '198.18.0.2 (vxlan)' }] }),
      comp('proxy', { services: 12, endpoints: 30, mode: 'nftables' }),
      comp('dns', { queries: 100, cacheHits: 60, cacheMisses: 40, errors: 0, listen: ['169.254.20.10:53'] }),
    ],
  });
  t.match(out, /n2\s+10\.244\.2\.0\/24\s+via 198\.18\.0\.2 \(vxlan\)/);
  t.match(out, /12 programmed, 30 endpoints \(nftables\)/);
  t.match(out, /100 queries, 60 cache hits, 40 misses, 0 errors/);
  t.match(out, /proxy\s+ready\s+syncs 3, errors 1/);
});

t.test('the proxy in ipvs mode shows virtual and real server counts', async (t) => {
  const comp = (status: Record<string, unknown>) => ({ name: 'proxy', feature: 'proxy' as const, ready: true, syncs: 1, errors: 0, consecutiveFailures: 0, lastSuccessfulSync: '2026-01-01T00:00:01.000Z', lastSyncDurationMs: 1, lastError: undefined, status });
  const out = formatStatus({ ...base, components: [comp({ services: 2, endpoints: 3, mode: 'ipvs', virtualServers: 3, realServers: 4, drainingRealServers: 1, scheduler: 'rr', vips: 2, vipDevice: 'podwire-ipvs0' })] });
  t.match(out, /2 programmed, 3 endpoints \(ipvs\)/);
  t.match(out, /IPVS: 3 virtual servers, 4 real servers \(1 draining\), scheduler rr, 2 VIPs on podwire-ipvs0/);
});

t.test('overlay peers: a dual-stack peer\'s IPv6 path on its own line', async (t) => {
  const overlay = component('overlay', { peers: [{ node: 'n2', podCIDRs: ['10.244.2.0/24', 'fd00:10:244:2::/64'], via: '198.18.0.2 (direct eth0)', via6: 'fd00:198:18::2 (direct eth0)', encapsulated: false, mode: 'direct' }] });
  const out = formatStatus({ ...base, components: [overlay] } as DaemonStatus);
  t.match(out, /n2\s+10\.244\.2\.0\/24, fd00:10:244:2::\/64 via 198\.18\.0\.2 \(direct eth0\)/);
  t.match(out, /\n\s+IPv6\s+via fd00:198:18::2 \(direct eth0\)/);
});

t.test('overlay: vxlan.ipv6Device false says the IPv6 pods ride in the IPv4 device', async (t) => {
  const off = formatStatus({ ...base, components: [component('overlay', { peers: [], ipv6PodsIn: 'pw.1 (vxlan.ipv6Device false)' })] } as DaemonStatus);
  t.match(off, /IPv6 pod traffic rides in pw\.1 \(vxlan\.ipv6Device false\)/);
  const on = formatStatus({ ...base, components: [component('overlay', { peers: [] })] } as DaemonStatus);
  t.notMatch(on, /IPv6 pod traffic rides in/);
});
