import { Packet } from 'dns2';
import { Registry } from 'prom-client';
import t from 'tap';
import { systemClock } from '../common/clock';
import { silentLogger } from '../common/log';
import type { ComponentContext } from '../daemon/component';
import { loadConfig } from '../daemon/config';
import type { Kernel } from '../kernel';
import type { ClusterState, PodObject } from '../k8s/types';
import { AutopathHandler } from './autopath';
import { DnsComponent } from './component';
import { buildDnsSection, type DnsSection, parseResolvSearch } from './config';
import { FakeController } from './controller';
import type { Next } from './handler';
import { ask, pod, service } from './testing';
import { bareResponse, encodeName, encodeResponse, ipBytes, keyToName, type Query, RCODE, TYPE } from './wire';

interface Parsed {
  header: { rcode: number };
  answers: { name: string; type: number; domain?: string; address?: string }[];
}
const parse = (b: Buffer | null): Parsed => {
  if (!b) throw new Error('no reply');
  return Packet.parse(b) as unknown as Parsed;
};

const POD_IP = '10.244.1.7';

/** A fake rest-of-chain: names → A/AAAA data; `async` names answer through a Promise (forwarded). */
function fakeNext(names: Record<string, { a?: string; aaaa?: string; async?: boolean; rcode?: number }>, asked: string[] = []): Next {
  return (q: Query) => {
    const name = keyToName(q.key);
    asked.push(`${name}/${q.qtype}`);
    const n = names[name];
    let reply: Buffer;
    if (!n) reply = bareResponse(q, RCODE.NXDOMAIN);
    else if (n.rcode !== undefined) reply = bareResponse(q, n.rcode);
    else {
      const data = q.qtype === TYPE.A ? n.a : q.qtype === TYPE.AAAA ? n.aaaa : undefined;
      reply = encodeResponse(encodeName(name), q.qtype, RCODE.NOERROR, data ? [{ name: null, type: q.qtype, ttl: 30, data: ipBytes(data)! }] : [], [], []);
      reply.writeUInt16BE(q.id, 0);
    }
    return n?.async ? Promise.resolve(reply) : reply;
  };
}

function handler(pods: PodObject[], hostSearch: string[] = []): AutopathHandler {
  return new AutopathHandler({
    zones: ['cluster.local'],
    nodeName: 'n1',
    podsByIP: (ip) => pods.filter((p) => p.podIPs.includes(ip)),
    hostSearch: () => hostSearch,
    ttl: 5,
    ourSize: 1232,
  });
}

const chain = (h: AutopathHandler, next: Next): Next => (q) => h.serve(q, next);

t.test('the walk answers the first search name with CNAME + the first name that exists', async (t) => {
  const h = handler([pod('prod', 'web', POD_IP)], ['corp.example']);
  const asked: string[] = [];
  const next = fakeNext({ 'example.com': { a: '192.0.2.1', aaaa: '2001:db8::1', async: true } }, asked);
  const r = parse(await ask(chain(h, next), 'example.com.prod.svc.cluster.local', TYPE.A, { client: POD_IP }));
  t.equal(r.header.rcode, RCODE.NOERROR);
  t.same(r.answers.map((a) => [a.name, a.type, a.domain ?? a.address]), [
    ['example.com.prod.svc.cluster.local', TYPE.CNAME, 'example.com'],
    ['example.com', TYPE.A, '192.0.2.1'],
  ]);
  // The search list in kubelet's order: the pod's namespace, svc, the zone, the node's domains, the bare name.
  t.same(asked, ['example.com.prod.svc.cluster.local/1', 'example.com.svc.cluster.local/1', 'example.com.cluster.local/1', 'example.com.corp.example/1', 'example.com/1']);
  const r6 = parse(await ask(chain(h, next), 'example.com.prod.svc.cluster.local', TYPE.AAAA, { client: POD_IP }));
  t.same(r6.answers.map((a) => [a.type, a.domain ?? a.address]), [[TYPE.CNAME, 'example.com'], [TYPE.AAAA, '2001:db8::1']]);
});

t.test('A and AAAA stop at the same name: the first that exists, even without data of the type', async (t) => {
  const h = handler([pod('prod', 'web', POD_IP)]);
  // kubernetes.default.svc.cluster.local has only an A record; the bare name would have AAAA.
  const next = fakeNext({ 'kubernetes.default.svc.cluster.local': { a: '10.96.0.1' }, 'kubernetes.default': { a: '192.0.2.9', aaaa: '2001:db8::9' } });
  const a = parse(await ask(chain(h, next), 'kubernetes.default.prod.svc.cluster.local', TYPE.A, { client: POD_IP }));
  const aaaa = parse(await ask(chain(h, next), 'kubernetes.default.prod.svc.cluster.local', TYPE.AAAA, { client: POD_IP }));
  t.same(a.answers.map((x) => x.domain ?? x.address), ['kubernetes.default.svc.cluster.local', '10.96.0.1']);
  t.same(aaaa.answers.map((x) => x.domain ?? x.address), ['kubernetes.default.svc.cluster.local'], 'NODATA at the same target, not the bare name');
  t.equal(aaaa.header.rcode, RCODE.NOERROR);
});

t.test('plain answers whenever the pod is in doubt', async (t) => {
  const next = fakeNext({ 'example.com': { a: '192.0.2.1' } });
  const q = 'example.com.prod.svc.cluster.local';
  const cases: [string, PodObject[], string][] = [
    ['unknown source IP', [], POD_IP],
    ['IP reused: two pods hold it', [pod('prod', 'web', POD_IP), pod('other', 'new', POD_IP)], POD_IP],
    ['pod of another node', [pod('prod', 'web', POD_IP, { node: 'n2' })], POD_IP],
    ["query for another namespace's search domain", [pod('other', 'web', POD_IP)], POD_IP],
    ['hostNetwork pod', [{ ...pod('prod', 'web', POD_IP), hostNetwork: true }], POD_IP],
  ];
  for (const [what, pods, client] of cases) {
    const r = parse(await ask(chain(handler(pods), next), q, TYPE.A, { client }));
    t.equal(r.header.rcode, RCODE.NXDOMAIN, what);
    t.same(r.answers, [], what);
  }
  // A completed pod that held the IP does not make it ambiguous.
  const r = parse(await ask(chain(handler([{ ...pod('old', 'gone', POD_IP), phase: 'Succeeded' }, pod('prod', 'web', POD_IP)]), next), q, TYPE.A, { client: POD_IP }));
  t.equal(r.answers.length, 2, 'the running pod is the only candidate');
});

t.test('a failing candidate or other types give the plain answer', async (t) => {
  const h = handler([pod('prod', 'web', POD_IP)]);
  const failing = fakeNext({ 'example.com.cluster.local': { rcode: RCODE.SERVFAIL }, 'example.com': { a: '192.0.2.1' } });
  const r = parse(await ask(chain(h, failing), 'example.com.prod.svc.cluster.local', TYPE.A, { client: POD_IP }));
  t.equal(r.header.rcode, RCODE.NXDOMAIN, 'SERVFAIL on the way: the client walks its own list');
  const nothing = fakeNext({});
  t.equal(parse(await ask(chain(h, nothing), 'nope.prod.svc.cluster.local', TYPE.A, { client: POD_IP })).header.rcode, RCODE.NXDOMAIN, 'no name exists');
  const mx = fakeNext({ 'example.com': { a: '192.0.2.1' } });
  t.equal(parse(await ask(chain(h, mx), 'example.com.prod.svc.cluster.local', TYPE.TXT, { client: POD_IP })).header.rcode, RCODE.NXDOMAIN, 'only A and AAAA');
  const existing = fakeNext({ 'web.prod.svc.cluster.local': { a: '10.96.3.3' } });
  const own = parse(await ask(chain(h, existing), 'web.prod.svc.cluster.local', TYPE.A, { client: POD_IP }));
  t.same(own.answers.map((a) => a.type), [TYPE.A], 'an existing first name is answered plainly, no CNAME');
});

t.test('resolv.conf search line', async (t) => {
  t.same(parseResolvSearch('nameserver 1.1.1.1\nsearch Corp.Example. lab.example\n'), ['corp.example', 'lab.example']);
  t.same(parseResolvSearch('domain x.example\nsearch a.example\n'), ['a.example'], 'the last line wins');
  t.same(parseResolvSearch('nameserver 1.1.1.1\n'), []);
});

t.test('component: dns.autopath walks the cluster zone with the pod index', async (t) => {
  const fc = new FakeController();
  fc.ns.add('prod');
  fc.ns.add('default');
  fc.svc.set('default/kubernetes', service('default', 'kubernetes', { clusterIPs: ['10.96.0.1'], ports: [{ name: 'https', port: 443 }] }));
  fc.podList.push(pod('prod', 'client', POD_IP));
  const make = (autopath: boolean): DnsComponent => {
    const config = loadConfig({ argv: ['--node-name', 'n1'], env: {}, readFile: () => { throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' }); } }).config;
    const ctx: ComponentContext<DnsSection> = {
      config,
      section: buildDnsSection({ upstreams: [], resolvConf: '/nonexistent/resolv.conf', autopath }),
      state: {} as ClusterState,
      node: { patchAnnotations: async () => undefined, setCondition: async () => undefined, writesBack: false },
      kernel: undefined as unknown as Kernel,
      logger: silentLogger,
      clock: systemClock,
      metrics: new Registry(),
    };
    return new DnsComponent(ctx, { controller: fc });
  };
  const on = make(true);
  await on.sync(new AbortController().signal);
  const r = parse(await ask(on.handler, 'kubernetes.default.prod.svc.cluster.local', TYPE.A, { client: POD_IP }));
  t.same(r.answers.map((a) => [a.type, a.domain ?? a.address]), [[TYPE.CNAME, 'kubernetes.default.svc.cluster.local'], [TYPE.A, '10.96.0.1']]);
  const other = parse(await ask(on.handler, 'kubernetes.default.prod.svc.cluster.local', TYPE.A, { client: '10.244.9.9' }));
  t.equal(other.header.rcode, RCODE.NXDOMAIN, 'an unknown client gets the plain answer');
  const off = make(false);
  await off.sync(new AbortController().signal);
  t.equal(parse(await ask(off.handler, 'kubernetes.default.prod.svc.cluster.local', TYPE.A, { client: POD_IP })).header.rcode, RCODE.NXDOMAIN, 'off by default');
});
