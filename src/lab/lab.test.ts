/** Unit tests of the lab's pure parts: the manifest folder, the row registry and table, names, the CLI's usage errors. */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { labCli } from './cli';
import { formatRows, runRows, shq, type LabContext, type RowGroup } from './rows';
import { isLabNamespace, nsNames } from './state';
import { LabSpecError, loadLabSpec, parseServers, podResolvConf } from './topology';
import { endpointAddresses } from '../k8s/types';

const EXAMPLES = path.resolve(__dirname, '../../../examples/lab');

t.test('examples/lab: 3 nodes, 2 subnets, pods with servers, every Service type', async (t) => {
  const s = loadLabSpec(EXAMPLES);
  t.same(s.nodes.map((n) => [n.name, n.subnet, n.ip, n.podCIDR, n.gateway]), [
    ['node1', 'lan-a', '198.18.0.1', '10.244.1.0/24', '10.244.1.1'],
    ['node2', 'lan-a', '198.18.0.2', '10.244.2.0/24', '10.244.2.1'],
    ['node3', 'lan-b', '198.18.1.3', '10.244.3.0/24', '10.244.3.1'],
  ]);
  t.same(s.subnets.map((x) => x.router), ['198.18.0.254', '198.18.1.254']);
  t.equal(s.client, 'web-0');
  t.ok(s.pods.length >= 6);
  t.same(s.pods.find((p) => p.name === 'echo-0')?.servers, [{ kind: 'udp-echo', port: 9000 }]);
  const types = new Set<string>(s.services.map((x) => (x.clusterIPs[0] === 'None' ? 'Headless' : x.type)));
  for (const ty of ['ClusterIP', 'NodePort', 'Headless', 'ExternalName']) t.ok(types.has(ty), ty);
  t.same(s.outside, { cidr: '198.19.0.0/24', prefixLength: 24, router: '198.19.0.254', address: '198.19.0.80', port: 80 }, 'an outside namespace off every lab CIDR');
  t.same(s.dnsServers.map((d) => [d.name, d.subnet, d.address, d.zone]), [['corp', 'lan-a', '198.18.0.53', 'corp.lab']], 'the stub domain server');
  t.ok(s.configMaps.some((c) => c.meta.key === 'kube-system/kube-dns' && c.data.stubDomains?.includes('corp.lab')), 'kube-dns ConfigMap with a stub domain');
  for (const x of s.services) for (const ip of x.clusterIPs) if (ip !== 'None') t.match(ip, /^10\.(9[6-9]|10[0-9]|11[01])\./, `${x.meta.key} ClusterIP in 10.96.0.0/12`);
  // Every EndpointSlice address is the IP of a pod of the lab (the folder has no controller).
  const podIps = new Set(s.pods.map((p) => p.ip));
  for (const e of s.endpointSlices) for (const ep of e.endpoints) for (const a of endpointAddresses(ep)) t.ok(podIps.has(a), `${e.meta.key}: ${a} is a pod`);
});

function folder(t: { teardown(fn: () => void): void }, files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwlab-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

t.test('errors name the file and the field', async (t) => {
  const base = Object.fromEntries(['lab.yaml', 'nodes.yaml', 'pods.yaml'].map((f) => [f, readFileSync(path.join(EXAMPLES, f), 'utf8')]));
  const bad = (files: Record<string, string>, field: RegExp): void => {
    const dir = folder(t, { ...base, ...files });
    try {
      loadLabSpec(dir);
      t.fail(`no error for ${String(field)}`);
    } catch (e) {
      t.ok(e instanceof LabSpecError, 'LabSpecError');
      const le = e as LabSpecError;
      t.match(`${le.file} ${le.field} ${le.reason}`, field);
    }
  };
  bad({ 'lab.yaml': base['lab.yaml']!.replace('subnet: lan-b', 'subnet: lan-c') }, /lab\.yaml spec\.nodes\[2\]\.subnet .*lan-c/);
  bad({ 'nodes.yaml': base['nodes.yaml']!.replace('198.18.1.3', '198.18.0.3') }, /spec\.nodes\[2\]\.subnet .*not in lan-b/);
  bad({ 'pods.yaml': base['pods.yaml']!.replaceAll('10.244.3.20', '10.244.1.99') }, /api-1 status\.podIP .*node3/);
  bad({ 'pods.yaml': base['pods.yaml']!.replace('"http:8080"', '"ftp:21"') }, /pods\.yaml document \d+ lab\.podwire\.io\/servers "ftp:21"/);
  bad({ 'lab.yaml': base['lab.yaml']!.replace('client: web-0', 'client: nobody') }, /spec\.client/);
  bad({ 'lab.yaml': base['lab.yaml']!.replace('cidr: 198.19.0.0/24', 'cidr: 10.244.200.0/24') }, /lab\.yaml spec\.outside\.cidr .*overlaps the cluster CIDR/);
  bad({ 'lab.yaml': base['lab.yaml']!.replace('address: 198.19.0.80', 'address: 198.19.1.80') }, /spec\.outside\.address 198\.19\.1\.80 is not in 198\.19\.0\.0\/24/);
  bad({ 'lab.yaml': base['lab.yaml']!.replace('address: 198.18.0.53', 'address: 198.18.0.2') }, /spec\.dnsServers\[0\]\.address .*already used/);
  bad({ 'lab.yaml': base['lab.yaml']!.replace('www.corp.lab:', 'www.corp.example:') }, /spec\.dnsServers\[0\]\.records\.www\.corp\.example not under the zone corp\.lab/);
  bad({ 'lab.yaml': '' }, /expected exactly one LabTopology/);
  t.throws(() => parseServers('http:0', 'x'), LabSpecError);
  t.same(parseServers('http:80, udp-echo:53', 'x'), [{ kind: 'http', port: 80 }, { kind: 'udp-echo', port: 53 }]);
});

t.test('pod resolv.conf: node-local DNS and the search path', async (t) => {
  t.equal(podResolvConf({ namespace: 'shop' }, 'cluster.local').split('\n').slice(1, 4).join('\n'), 'nameserver 169.254.20.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5');
});

t.test('lab namespace names never match the demo\'s <prefix>-<pid>-<seq>-* names', async (t) => {
  t.ok(isLabNamespace('pwlab', nsNames.node('pwlab', 'node1')));
  t.ok(isLabNamespace('pwlab', nsNames.pod('pwlab', 'web-0')));
  t.ok(isLabNamespace('pwlab', nsNames.router('pwlab')));
  t.ok(isLabNamespace('pwlab', nsNames.subnet('pwlab', 'lan-a')));
  t.notOk(isLabNamespace('pwlab', 'pwlab-4711-1-n1'), 'the demo');
  t.notOk(isLabNamespace('pwlab', 'pwlt-node-node1'), 'another prefix');
});

t.test('rows: groups of absent components are skipped, a throwing row is FAILED with its command', async (t) => {
  const ctx = { components: new Set(['cni']) } as unknown as LabContext;
  const groups: RowGroup[] = [
    { id: 'a', rows: () => [{ name: 'works', command: 'true', run: async () => ({ ok: true, detail: 'fine' }) }, { name: 'breaks', command: 'podwire lab exec web-0 -- false', run: async () => { throw new Error('boom\nmore'); } }] },
    { id: 'svc', requires: 'proxy', rows: () => { throw new Error('must not be called'); } },
  ];
  const seen: string[] = [];
  const r = await runRows(groups, ctx, (x) => seen.push(x.name));
  t.same(r.results.map((x) => [x.name, x.status, x.detail]), [['works', 'ok', 'fine'], ['breaks', 'FAILED', 'error: boom']]);
  t.same(r.skipped, [{ group: 'svc', reason: 'podwired has no proxy component yet' }]);
  t.same(seen, ['works', 'breaks']);
  const table = formatRows(r.results).split('\n');
  t.match(table[0], /^#\s+check\s+result\s+observed$/);
  t.match(table[3], /^2\s+breaks\s+FAILED\s+error: boom$/);
  t.match(table[4], /^\s+re-run: podwire lab exec web-0 -- false$/, 'the FAILED row names the command');
  t.equal(table.length, 5, 'ok rows have no re-run line');
});

t.test('shq quotes only what needs it', async (t) => {
  t.equal(shq('10.244.1.10'), '10.244.1.10');
  t.equal(shq("it's"), `'it'\\''s'`);
  t.equal(shq('a b'), `'a b'`);
});

t.test('lab CLI usage errors exit 2 and name the problem', async (t) => {
  const run = async (argv: string[]): Promise<{ code: number; err: string; out: string }> => {
    let err = '';
    let out = '';
    const code = await labCli({ argv, env: {}, stdout: (s) => (out += s), stderr: (s) => (err += s) });
    return { code, err, out };
  };
  t.equal((await run(['--help'])).code, 0);
  t.match((await run(['--help'])).out, /podwire lab <command>/);
  t.equal((await run([])).code, 2);
  t.match((await run(['frob'])).err, /unknown command "frob"/);
  t.match((await run(['up', '--prefix', 'BAD'])).err, /--prefix "BAD"/);
  t.match((await run(['down', '--backend', 'vxlan'])).err, /options of `lab up`/);
  t.match((await run(['exec', 'web-0'])).err, /exec POD\|NODE -- CMD/);
  t.match((await run(['status', '--state-dir', 'rel'])).err, /absolute path/);
  t.match((await run(['up', '--bogus'])).err, /bogus/);
});
