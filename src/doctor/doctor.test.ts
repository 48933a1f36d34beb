/**
 * Each doctor check against the kernel fakes and a scripted host: a healthy node is all ok,
 * and each broken condition gives FAIL/warn from exactly the check that owns it.
 */
import t from 'tap';
import { Cidr } from '../common';
import type { DaemonStatus } from '../daemon/daemon';
import { fakeKernel, type FakeKernel } from '../kernel/testing';
import { CHECKS, formatReport, runDoctor } from './index';
import { dropForwardChains } from './checks/foreign-drop';
import { elementCounts } from './checks/services';
import { peerTargets } from './checks/peers';
import type { DoctorEnv, Finding, RunOutput } from './types';
import type { ExpectedServices } from '../proxy/expected';
import { FakeIpvs } from '../kernel/testing/fake-ipvs';

const CONFLIST = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'podwire',
  plugins: [{ type: 'podwire', bridge: 'pw0', mtu: 1450, ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]] } }, { type: 'portmap' }],
});

function status(over: { backend?: string; proxyMode?: string; components?: DaemonStatus['components'] } = {}): DaemonStatus {
  const comp = (name: string, feature: string, st: Record<string, unknown>) =>
    ({ name, feature, ready: true, syncs: 3, errors: 0, consecutiveFailures: 0, lastSuccessfulSync: 'x', lastSyncDurationMs: 1, lastError: undefined, status: st }) as DaemonStatus['components'][number];
  return {
    version: '0.1.0',
    nodeName: 'node-a',
    ready: true,
    source: { name: 'manifests', synced: true, objects: {}, problems: [] },
    node: { podCIDRs: ['10.244.1.0/24'], addresses: [{ type: 'InternalIP', address: '198.18.0.1' }] },
    config: { backend: over.backend ?? 'vxlan', proxyMode: over.proxyMode ?? 'nftables', clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/12', clusterDomain: 'cluster.local', enable: ['cni', 'overlay', 'proxy', 'dns'], dnsListen: ['169.254.20.10:53'] },
    components: over.components ?? [
      comp('overlay', 'overlay', {
        backend: 'vxlan',
        device: 'pw.1',
        mtu: 1450,
        underlay: 'eth0 198.18.0.0/24 mtu 1500',
        peers: [{ node: 'node-b', podCIDRs: ['10.244.2.0/24'], via: '198.18.0.2 (vxlan pw.1, VTEP 10.244.2.0 aa:bb:cc:00:00:02)', encapsulated: true, mode: 'vxlan' }],
      }),
      comp('proxy', 'proxy', { mode: 'nftables', table: 'inet podwire', services: 2, endpoints: 3, elements: 3, invalidServices: 0 }),
      comp('dns', 'dns', { listen: ['169.254.20.10:53'] }),
    ] as DaemonStatus['components'],
    startedAt: 'x',
  } as DaemonStatus;
}

interface Scenario {
  kernel: FakeKernel;
  env: DoctorEnv;
  files: Map<string, string>;
  commands: Map<string, RunOutput>;
  down: Set<string>;
  dnsAnswers: Map<string, { rcode: string; addresses: string[] } | { error: string }>;
  /** Servers answered by someone else than podwired (its counter does not move). */
  foreignVips: Set<string>;
  expected: { value: ExpectedServices | { error: string } | undefined };
  ipvs: FakeIpvs;
}

async function healthy(given: DaemonStatus | null = status()): Promise<Scenario> {
  const st = given ?? undefined;
  const kernel = fakeKernel();
  await kernel.sysctl.write('net.ipv4.ip_forward', '1');
  await kernel.net.createLink({ kind: 'bridge', name: 'eth0', mtu: 1500 });
  await kernel.net.addAddress('eth0', Cidr.parse('198.18.0.1/24'));
  await kernel.net.addRoute({ dst: Cidr.parse('0.0.0.0/0'), dev: 'eth0' });
  await kernel.net.addAddress('lo', Cidr.parse('169.254.20.10/32'));
  await kernel.net.addAddress('lo', Cidr.parse('10.96.0.10/32'));
  kernel.nft.listJsonValue = {
    nftables: [
      { metainfo: {} },
      { table: { family: 'inet', name: 'podwire' } },
      { map: { family: 'inet', table: 'podwire', name: 'services4', elem: [[{ concat: ['10.96.0.1', 'tcp', 443] }, { goto: { target: 'lb4c-tcp-1' } }], [{ concat: ['10.96.0.10', 'udp', 53] }, { goto: { target: 'lb4c-udp-1' } }]] } },
      { map: { family: 'inet', table: 'podwire', name: 'endpoints4-tcp', elem: [[{ concat: ['10.96.0.1', 'tcp', 443, 0] }, { concat: ['198.18.0.1', 6443] }]] } },
      { set: { family: 'inet', table: 'podwire', name: 'affinity-1', flags: ['dynamic', 'timeout'], elem: [1, 2, 3] } },
    ],
  };
  // What podwired says it should program (GET /v1/proxy/services): the two Services above.
  const expected: { value: ExpectedServices | { error: string } | undefined } = {
    value: {
      mode: 'nftables',
      families: [4, 6],
      table: 'inet podwire',
      services: 2,
      skipped: 1,
      invalid: 0,
      pending: 0,
      entries: [['default/kubernetes', 'c', 4, '10.96.0.1', 'tcp', 443], ['kube-system/kube-dns', 'c', 4, '10.96.0.10', 'udp', 53]],
    },
  };
  const ipvs = new FakeIpvs();
  const files = new Map<string, string>([
    ['/etc/cni/net.d/10-podwire.conflist', CONFLIST],
    ['/lib/modules/6.1.0/modules.dep', 'kernel/net/ipv4/netfilter/ip_tables.ko: x\nkernel/drivers/net/vxlan/vxlan.ko.xz: y\n'],
    ['/sys/module/nf_conntrack', ''],
    ['/sys/module/bridge', ''],
    ['/sys/module/ip_set', ''],
    ['/etc/os-release', 'ID=debian\nVERSION_ID="12"\n'],
  ]);
  const ok = (stdout = ''): RunOutput => ({ code: 0, stdout, stderr: '' });
  const commands = new Map<string, RunOutput>([
    ['nft list tables', ok('table inet podwire\n')],
    ['iptables -t filter -S INPUT', ok('-P INPUT ACCEPT\n')],
    ['ipset list -n', ok()],
    ['iptables-nft -t filter -S INPUT', ok('-P INPUT ACCEPT\n')],
    ['ethtool -k pw.1', ok('Features for pw.1:\ntx-checksumming: on\n\ttx-checksum-ip-generic: on\n')],
    ['nft list chains', ok('table inet podwire {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n')],
    ['iptables-legacy-save -t filter', { code: 127, stdout: '', stderr: 'not found' }],
    ['iptables --version', ok('iptables v1.8.9 (nf_tables)\n')],
    ['iptables-legacy-restore --version', { code: 127, stdout: '', stderr: 'not found' }],
  ]);
  const down = new Set<string>();
  const foreignVips = new Set<string>();
  const queries = { n: 100 };
  const dnsAnswers = new Map<string, { rcode: string; addresses: string[] } | { error: string }>([
    ['169.254.20.10 kubernetes.default.svc.cluster.local', { rcode: 'NOERROR', addresses: ['10.96.0.1'] }],
    ['169.254.20.10 kube-dns.kube-system.svc.cluster.local', { rcode: 'NOERROR', addresses: ['10.96.0.10'] }],
    ['10.96.0.10 kubernetes.default.svc.cluster.local', { rcode: 'NOERROR', addresses: ['10.96.0.1'] }],
  ]);
  const dirs = (p: string): string[] | undefined => {
    const names = [...files.keys()].filter((f) => f.startsWith(`${p}/`)).map((f) => f.slice(p.length + 1));
    return names.length ? names : undefined;
  };
  const env: DoctorEnv = {
    kernel,
    status: st,
    statusError: st ? undefined : 'cannot reach podwired at /run/podwire/podwire.sock: connect ENOENT',
    cniConfDir: '/etc/cni/net.d',
    kernelRelease: '6.1.0',
    readFile: async (p) => files.get(p),
    listDir: async (p) => dirs(p),
    exists: async (p) => files.has(p),
    run: async (argv) => commands.get(argv.join(' ')) ?? { code: 127, stdout: '', stderr: `${argv[0]}: not found` },
    ping: async (a) => (down.has(a) ? { ok: false, detail: 'no echo reply within 1000 ms' } : { ok: true, detail: 'echo reply in 0.1 ms' }),
    dnsQuery: async (server, _port, name) => {
      const a = dnsAnswers.get(`${server} ${name}`) ?? { error: 'no answer within 2000 ms' };
      if (!('error' in a) && !foreignVips.has(server)) queries.n++;
      return a;
    },
    dnsQueries: async () => (st ? queries.n : undefined),
    proxyServices: async () => expected.value,
    ipvsServices: () => ipvs.listServices(),
  };
  return { kernel, env, files, commands, down, dnsAnswers, foreignVips, expected, ipvs };
}

const notOk = (fs: Finding[]): string[] => fs.filter((f) => f.level !== 'ok').map((f) => `${f.level} ${f.check}: ${f.subject}`);

t.test('a healthy node: every check ok, exit status ok', async (t) => {
  const s = await healthy();
  const r = await runDoctor(s.env);
  t.same(notOk(r.findings), [], formatReport(r));
  t.equal(r.status, 'ok');
  t.same(new Set(r.findings.map((f) => f.check)), new Set(['podwired', ...CHECKS.map((c) => c.id)]), 'every check reported');
  t.match(formatReport(r), /node-a: \d+ ok, 0 warn, 0 FAIL\n$/);
  const allows = r.findings.find((f) => f.subject === 'allows');
  t.match(allows?.detail, /proxy modes: nftables, iptables; backends: host-gw, vxlan/);
  t.match(r.findings.find((f) => f.subject === 'ipvs')?.detail, /absent .* not needed/);
  t.match(r.findings.find((f) => f.subject === 'iptables')?.detail, /backends: legacy no, nft yes; podwired's auto uses nft/);
});

t.test('each broken condition is reported by exactly its check, with a fix', async (t) => {
  const cases: [string, (s: Scenario) => void | Promise<void>, string[]][] = [
    ['ip_forward off', (s) => s.kernel.sysctl.write('net.ipv4.ip_forward', '0'), ['FAIL ip-forward: net.ipv4.ip_forward']],
    ['dual-stack node with IPv6 forwarding off', (s) => void (s.env.status!.node!.podCIDRs = ['10.244.1.0/24', 'fd00:10:244:1::/64']), ['FAIL ip-forward: net.ipv6.conf.all.forwarding']],
    ['vxlan module missing with backend vxlan', (s) => void s.files.set('/lib/modules/6.1.0/modules.dep', ''), ['FAIL kernel-features: vxlan']],
    ['pod MTU too large for vxlan', (s) => void s.files.set('/etc/cni/net.d/10-podwire.conflist', CONFLIST.replace('1450', '1500')), ['FAIL mtu: pod MTU 1500 (underlay eth0 1500, vxlan -50)']],
    ['checksum offload on an old kernel', (s) => {
      s.env.kernelRelease = '5.4.0-100-generic';
      s.files.set('/lib/modules/5.4.0-100-generic/modules.dep', s.files.get('/lib/modules/6.1.0/modules.dep')!);
    }, ['warn checksum-offload: pw.1']],
    ['no CNI config dir', (s) => void s.files.delete('/etc/cni/net.d/10-podwire.conflist'), ['warn mtu: pod MTU', 'FAIL cni-config: /etc/cni/net.d']],
    ['a flannel conflist first', (s) => void s.files.set('/etc/cni/net.d/10-flannel.conflist', '{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"}]}'), ['FAIL cni-config: /etc/cni/net.d/10-flannel.conflist']],
    ['a broken conflist', (s) => void s.files.set('/etc/cni/net.d/10-podwire.conflist', CONFLIST.replace('"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.1.0/24"}]]}', '"ipam":{"type":"host-local","ranges":[]}')), ['FAIL cni-config: /etc/cni/net.d/10-podwire.conflist']],
    ['peer underlay down', (s) => void s.down.add('198.18.0.2'), ['FAIL peers: peer node-b 198.18.0.2']],
    ['tunnel blocked', (s) => void s.down.add('10.244.2.0'), ['FAIL peers: peer node-b VTEP 10.244.2.0']],
    ['DNS server silent', (s) => void s.dnsAnswers.delete('169.254.20.10 kubernetes.default.svc.cluster.local'), ['FAIL dns: server 169.254.20.10:53']],
    ['DNS server not synced', (s) => void s.dnsAnswers.set('169.254.20.10 kubernetes.default.svc.cluster.local', { rcode: 'SERVFAIL', addresses: [] }), ['FAIL dns: server 169.254.20.10:53']],
    ['no default/kubernetes Service (NXDOMAIN) is fine', (s) => void s.dnsAnswers.set('169.254.20.10 kubernetes.default.svc.cluster.local', { rcode: 'NXDOMAIN', addresses: [] }), []],
    ['kube-dns VIP answered by the kube-dns endpoints', async (s) => {
      s.foreignVips.add('10.96.0.10');
      await s.kernel.net.deleteAddress('lo', Cidr.parse('10.96.0.10/32'));
    }, ['warn dns: kube-dns VIP 10.96.0.10']],
    ['kube-dns VIP local but taken by the proxy (no answer)', (s) => void s.dnsAnswers.delete('10.96.0.10 kubernetes.default.svc.cluster.local'), ['FAIL dns: kube-dns VIP 10.96.0.10']],
    ['a Service element deleted from our table', (s) => void ((s.kernel.nft.listJsonValue as { nftables: { map?: { elem: unknown[] } }[] }).nftables[2]!.map!.elem.pop()), ['FAIL services: Services']],
    // podwired's own element count matches the kernel: only the Service list shows this one.
    ['a Service podwired never programmed', (s) => void (s.expected.value as ExpectedServices).entries.push(['ns/web', 'c', 4, '10.96.0.80', 'tcp', 80]), ['FAIL services: Services']],
    ['an endpoint element changed behind podwired', (s) => void ((s.kernel.nft.listJsonValue as { nftables: { map?: { elem: unknown[] } }[] }).nftables[3]!.map!.elem.pop()), ['FAIL services: table inet podwire']],
    ['our table deleted', (s) => void (s.kernel.nft.listJson = async () => Promise.reject(new Error('No such file or directory'))), ['FAIL services: table inet podwire']],
    ['no Service at all: no table yet is fine', (s) => {
      s.kernel.nft.listJson = async () => Promise.reject(new Error('No such file or directory'));
      s.expected.value = { ...(s.expected.value as ExpectedServices), services: 0, skipped: 0, entries: [] };
    }, []],
    ['an older podwired without the Service list', (s) => void (s.expected.value = undefined), ['warn services: Service list']],
    ['Docker FORWARD drop', (s) => void s.commands.set('nft list chains', { code: 0, stdout: 'table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n', stderr: '' }), ['FAIL foreign-drop: nft ip filter FORWARD']],
    ['iptables mode on Debian 12 iptables-nft: podwired restores in chunks, nothing to warn about', (s) => void (s.env.status = status({ proxyMode: 'iptables' })), []],
  ];
  for (const [name, breakIt, expected] of cases) {
    const s = await healthy();
    await breakIt(s);
    const r = await runDoctor(s.env);
    t.same(notOk(r.findings), expected, name);
    for (const f of r.findings.filter((x) => x.level !== 'ok')) t.ok(f.fix && f.fix.length > 0, `${name}: ${f.check} has a fix`);
    t.equal(r.status, expected.some((e) => e.startsWith('FAIL')) ? 'FAIL' : expected.length ? 'warn' : 'ok', `${name}: overall`);
  }
});

const proxyStatus = (st: Record<string, unknown>): DaemonStatus => {
  const s = status();
  s.components.find((c) => c.name === 'proxy')!.status = st;
  return s;
};

t.test('Services in each proxy mode: ok with counts, FAIL naming the missing ones, ipvs absent is a warning', async (t) => {
  const services = (r: { findings: Finding[] }) => r.findings.filter((f) => f.check === 'services');

  const nft = await healthy();
  t.match(services(await runDoctor(nft.env)), [{ subject: 'Services', level: 'ok', detail: /all 2 Services programmed in nftables mode \(2 addresses/ }, { subject: 'table inet podwire', level: 'ok' }]);
  (nft.expected.value as ExpectedServices).entries.push(['ns/web', 'c', 4, '10.96.0.80', 'tcp', 80], ['ns/web', 'n', 4, '', 'tcp', 30080]);
  (nft.expected.value as ExpectedServices).services = 3;
  (nft.expected.value as ExpectedServices).pending = 2;
  const failed = await runDoctor(nft.env);
  t.match(services(failed), [{ subject: 'Services', level: 'FAIL', detail: /^1 of 3 Services not programmed in table inet podwire \(2 of 4 addresses\): ns\/web 10\.96\.0\.80:80\/tcp \+1; podwired has 2 change\(s\) not applied yet/, fix: /reads its table back at the first proxy syncPeriod/ }]);
  t.same(JSON.parse(JSON.stringify(failed)).findings, failed.findings, '--json gives the same findings');
  t.match(formatReport(failed), /^FAIL  services +Services: 1 of 3 Services not programmed.*\n +fix: podwired reads its table back at the first proxy syncPeriod/m);

  // iptables mode: the rules read back with the proxy's iptables backend.
  const ipt = await healthy(proxyStatus({ mode: 'iptables', backend: 'iptables-legacy-restore', services: 2, endpoints: 1, invalidServices: 0 }));
  ipt.expected.value = { ...(ipt.expected.value as ExpectedServices), mode: 'iptables', table: undefined, iptablesBackend: 'legacy' };
  const nat = (rules: string[]) => ({ code: 0, stdout: `*nat\n:PODWIRE-SERVICES - [0:0]\n:PODWIRE-NODEPORTS - [0:0]\n${rules.join('\n')}\nCOMMIT\n`, stderr: '' });
  const k8s = '-A PODWIRE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j PW-SVC-AAAAAAAAAAAAAAAA';
  const dnsRule = '-A PODWIRE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns has no endpoints" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable';
  ipt.commands.set('iptables-legacy-save -t nat', nat([k8s, '-A PODWIRE-SERVICES ! -d 127.0.0.0/8 -m comment --comment "podwire service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j PODWIRE-NODEPORTS']));
  ipt.commands.set('iptables-legacy-save -t filter', { code: 0, stdout: `*filter\n:PODWIRE-SERVICES - [0:0]\n${dnsRule}\nCOMMIT\n`, stderr: '' });
  t.match(services(await runDoctor(ipt.env)), [{ subject: 'Services', level: 'ok', detail: /all 2 Services programmed in iptables mode \(2 addresses and NodePorts in iptables-legacy-save;/ }]);
  ipt.commands.set('iptables-legacy-save -t nat', nat([]));
  t.match(services(await runDoctor(ipt.env)), [{ subject: 'Services', level: 'FAIL', detail: /1 of 2 Services not programmed in iptables-legacy-save \(1 of 2 addresses\): default\/kubernetes 10\.96\.0\.1:443\/tcp$/, fix: /syncPeriod/ }]);
  ipt.commands.delete('iptables-legacy-save -t nat');
  t.match(services(await runDoctor(ipt.env)), [{ subject: 'Services', level: 'warn', detail: /iptables-legacy-save -t nat failed/ }]);

  // ipvs mode: the virtual servers; this kernel may have no ip_vs at all.
  const vs = await healthy(proxyStatus({ mode: 'ipvs', services: 2, endpoints: 1, invalidServices: 0 }));
  vs.expected.value = { ...(vs.expected.value as ExpectedServices), mode: 'ipvs', families: [4], table: undefined };
  vs.ipvs.unavailable = true;
  t.match(services(await runDoctor(vs.env)), [{ subject: 'Services', level: 'warn', detail: /IPVS is absent in this kernel .*not compared/, fix: /modprobe ip_vs/ }]);
  vs.ipvs.unavailable = false;
  await vs.ipvs.apply([{ op: 'add', entry: { kind: 'service', service: { family: 4, protocol: 'tcp', address: '10.96.0.1', port: 443, scheduler: 'rr' } } }]);
  t.match(services(await runDoctor(vs.env)), [{ subject: 'Services', level: 'FAIL', detail: /kube-system\/kube-dns 10\.96\.0\.10:53\/udp/ }]);
  await vs.ipvs.apply([{ op: 'add', entry: { kind: 'service', service: { family: 4, protocol: 'udp', address: '10.96.0.10', port: 53, scheduler: 'rr' } } }]);
  t.match(services(await runDoctor(vs.env)), [{ subject: 'Services', level: 'ok', detail: /all 2 Services programmed in ipvs mode/ }]);
});

t.test('without podwired: a warning, and the checks that need its state say so instead of failing', async (t) => {
  const s = await healthy(null);
  const r = await runDoctor(s.env);
  t.same(notOk(r.findings), ['warn podwired: control socket', 'warn peers: peers', 'warn dns: dns', 'warn services: services']);
  t.same(JSON.parse(JSON.stringify(r)).counts, r.counts, '--json carries the same report');
});

t.test('a check that throws becomes a warning naming it, and the others still run', async (t) => {
  const s = await healthy();
  s.env.listDir = async () => {
    throw new Error('EACCES');
  };
  const r = await runDoctor(s.env);
  t.match(notOk(r.findings), ['warn mtu: MTU', 'warn cni-config: CNI config']);
  t.ok(r.findings.some((f) => f.check === 'iptables-nft'));
});

t.test('parsers', async (t) => {
  t.same(dropForwardChains('table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\ntable inet podwire {\n\tchain fwd {\n\t\ttype filter hook forward priority 0; policy drop;\n\t}\n}\n', new Set(['inet podwire'])), ['ip filter FORWARD']);
  t.same([...elementCounts({ nftables: [{ map: { name: 'm', elem: [1] } }, { set: { name: 'd', flags: ['dynamic'], elem: [1] } }, { set: { name: 'e' } }] }).entries()], [['m', 1], ['e', 0]]);
  t.same(peerTargets({ peers: [{ node: 'b', via: '198.18.1.2 (host-gw eth0)', encapsulated: false }] }), [{ node: 'b', underlay: '198.18.1.2', vtep: undefined }]);
});
