import t from 'tap';
import { FakeNft } from './fake-nft';
import { KUBE_PROXY_STYLE_RULESET as RULESET } from './fixtures';


const pkt = { family: 4 as const, saddr: '10.180.0.9', daddr: '172.30.0.41', protocol: 'tcp' as const, dport: 80, hook: 'prerouting' as const };

t.test('ClusterIP: verdict map -> service chain -> numgen -> endpoint DNAT', async (t) => {
  const nft = new FakeNft();
  await nft.apply(RULESET);
  const r = nft.trace(pkt);
  t.equal(r.verdict, 'accept');
  t.same(r.dnat, { addr: '10.180.0.1', port: 80 }, 'numgen value 0 first');
  t.same(r.numgen, [0]);
  t.same(r.path, [
    'kube-proxy/nat-prerouting:1',
    'kube-proxy/services:1',
    'kube-proxy/service-ULMVA6XW-ns1/svc1/tcp/p80:2',
    'kube-proxy/endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80:2',
  ]);
  t.same(r.alternatives?.map((a) => a.dnat), [{ addr: '10.180.0.1', port: 80 }, { addr: '10.180.0.2', port: 80 }], 'every possible endpoint');
  t.same(nft.trace({ ...pkt, numgen: 1 }).dnat, { addr: '10.180.0.2', port: 80 }, 'a chosen one');
  t.equal(nft.trace({ ...pkt, numgen: 1 }).alternatives, undefined);
  // From outside the cluster CIDR: marked for masquerade.
  t.equal(nft.trace({ ...pkt, saddr: '192.168.1.9', numgen: 0 }).mark, 0x4000);
  t.equal(nft.trace({ ...pkt, numgen: 0 }).mark, undefined, 'a pod source is not marked');
  // Hairpin: the endpoint itself is marked.
  t.equal(nft.trace({ ...pkt, saddr: '10.180.0.1', numgen: 0 }).mark, 0x4000);
  t.equal(nft.trace({ ...pkt, dport: 81 }).dnat, undefined, 'other port: no match');
  t.same(nft.trace({ ...pkt, dport: 81 }).path, ['kube-proxy/nat-prerouting:1'], 'jumped to services, no element matched');
  t.equal(nft.trace({ ...pkt, hook: 'output', numgen: 0 }).dnat?.addr, '10.180.0.1', 'output hook too');
});

t.test('NodePort via fib daddr type local; masquerade in postrouting; reject for no endpoints', async (t) => {
  const nft = new FakeNft();
  await nft.apply(RULESET);
  const np = { ...pkt, daddr: '198.18.0.1', dport: 30080, numgen: 1 };
  t.equal(nft.trace(np).dnat, undefined, 'not a local address: no NodePort');
  t.same(nft.trace({ ...np, daddrLocal: true }).dnat, { addr: '10.180.0.2', port: 80 });
  t.same(nft.trace({ ...np, daddr: '127.0.0.1', daddrLocal: true }).dnat, undefined, '127/8 excluded');
  const post = nft.trace({ ...pkt, hook: 'postrouting', mark: 0x4000 });
  t.equal(post.masquerade, true);
  t.equal(post.mark, 0, 'the masquerade bit is cleared');
  t.same(post.path, ['kube-proxy/masquerading:2', 'kube-proxy/masquerading:3']);
  t.equal(nft.trace({ ...pkt, hook: 'postrouting' }).masquerade, undefined, 'unmarked: returned');
  const rej = nft.trace({ ...pkt, daddr: '172.30.0.42', protocol: 'udp', dport: 53, hook: 'forward' });
  t.equal(rej.verdict, 'reject');
  t.same(rej.path, ['kube-proxy/filter-forward:1', 'kube-proxy/reject-chain:1']);
  t.equal(nft.trace({ ...pkt, daddr: '172.30.0.42', protocol: 'udp', dport: 53, hook: 'forward', ctState: 'established' }).verdict, 'accept', 'ct state new only');
});

t.test('incremental updates: elements, flush chain, delete chain; atomic failure names the line', async (t) => {
  const nft = new FakeNft();
  await nft.apply(RULESET);
  await nft.apply(
    [
      'add chain ip kube-proxy endpoint-NEW-ns1/svc1/tcp/p80__10.180.0.3/80',
      'add rule ip kube-proxy endpoint-NEW-ns1/svc1/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80',
      'flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80',
      'add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-NEW-ns1/svc1/tcp/p80__10.180.0.3/80 }',
      'flush chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80',
      'delete chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80',
      'delete element ip kube-proxy no-endpoint-services { 172.30.0.42 . udp . 53 }',
      '',
    ].join('\n'),
  );
  const r = nft.trace(pkt);
  t.same(r.dnat, { addr: '10.180.0.3', port: 80 });
  t.same(r.alternatives?.length, 1);
  t.notOk(nft.chains('ip', 'kube-proxy')!.includes('endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80'));
  t.same(nft.elements('ip', 'kube-proxy', 'no-endpoint-services'), []);
  t.same(nft.elements('ip', 'kube-proxy', 'service-ips'), ['172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80']);
  const before = nft.rules('ip', 'kube-proxy', 'services');
  const scripts = nft.scripts.length;
  await t.rejects(
    nft.apply('add element ip kube-proxy service-ips { 172.30.0.50 . tcp . 80 : goto services }\nadd rule ip kube-proxy services jump nosuch\n'),
    { name: 'CommandError', message: /script line 2: add rule ip kube-proxy services jump nosuch/ },
  );
  t.same(nft.rules('ip', 'kube-proxy', 'services'), before, 'nothing changed');
  t.equal(nft.elements('ip', 'kube-proxy', 'service-ips')!.length, 1);
  t.equal(nft.scripts.length, scripts, 'a failed script is not recorded');
  await t.rejects(nft.apply('delete chain ip kube-proxy services\n'), { message: /busy/ });
  await t.rejects(nft.apply('add rule ip kube-proxy nosuchchain accept\n'), { message: /script line 1/ });
  await t.rejects(nft.apply('add flowtable ip kube-proxy f { hook ingress priority 0 ; }\n'), { message: /fake nft does not understand: add flowtable/ });
});

t.test('block form, inet family, sets with intervals, dnat maps, anonymous sets', async (t) => {
  const nft = new FakeNft();
  await nft.apply(`
table inet podwire {
  set blocked {
    type ipv4_addr
    flags interval
    elements = { 10.99.0.0/16, 192.0.2.1-192.0.2.9 }
  }
  map backends {
    type ipv4_addr . inet_service : ipv4_addr . inet_service
    elements = { 10.96.0.10 . 53 : 10.244.1.5 . 5353 }
  }
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip saddr @blocked drop
    meta l4proto { tcp, udp } dnat ip to ip daddr . th dport map @backends
  }
  chain fwd {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "pw*" oifname "eth0" accept
    ip protocol icmp accept
  }
}
`);
  t.same(nft.trace({ family: 4, saddr: '10.244.1.9', daddr: '10.96.0.10', protocol: 'udp', dport: 53, hook: 'prerouting' }).dnat, { addr: '10.244.1.5', port: 5353 });
  t.equal(nft.trace({ family: 4, saddr: '10.99.3.4', daddr: '10.96.0.10', protocol: 'udp', dport: 53, hook: 'prerouting' }).verdict, 'drop', 'CIDR interval');
  t.equal(nft.trace({ family: 4, saddr: '192.0.2.5', daddr: '10.96.0.10', protocol: 'udp', dport: 53, hook: 'prerouting' }).verdict, 'drop', 'range interval');
  t.equal(nft.trace({ family: 4, saddr: '10.244.1.9', daddr: '10.96.0.11', protocol: 'udp', dport: 53, hook: 'prerouting' }).dnat, undefined, 'map miss');
  const fwd = { family: 4 as const, saddr: '10.244.1.9', daddr: '8.8.8.8', protocol: 'tcp' as const, dport: 443, hook: 'forward' as const };
  t.equal(nft.trace(fwd).verdict, 'drop', 'policy drop');
  t.equal(nft.trace({ ...fwd, iifname: 'pw0', oifname: 'eth0' }).verdict, 'accept', 'wildcard ifname');
  t.equal(nft.trace({ ...fwd, ctState: 'related' }).verdict, 'accept');
  t.equal(nft.trace({ ...fwd, protocol: 'icmp', dport: undefined }).verdict, 'accept');
  t.equal(nft.trace({ ...fwd, family: 6, saddr: 'fd00::1', daddr: 'fd00::2' }).verdict, 'drop', 'inet tables see IPv6 too');
  t.equal(nft.trace({ ...fwd, chain: 'fwd', ctState: 'established' }).verdict, 'accept', 'start at a named chain');
});

t.test('reject variants', async (t) => {
  const nft = new FakeNft();
  await nft.apply(
    [
      'add table inet f',
      'add chain inet f in { type filter hook input priority 0 ; }',
      'add rule inet f in tcp dport 1 reject with tcp reset',
      'add rule inet f in udp dport 2 reject with icmp type port-unreachable',
      'add rule inet f in udp dport 3 reject with icmpx admin-prohibited',
      'add rule inet f in th dport 4 counter drop',
      '',
    ].join('\n'),
  );
  const p = { family: 4 as const, saddr: '10.0.0.1', daddr: '10.0.0.2', hook: 'input' as const };
  t.equal(nft.trace({ ...p, protocol: 'tcp', dport: 1 }).verdict, 'reject');
  t.equal(nft.trace({ ...p, protocol: 'udp', dport: 2 }).verdict, 'reject');
  t.equal(nft.trace({ ...p, protocol: 'udp', dport: 3 }).verdict, 'reject');
  t.same(nft.trace({ ...p, protocol: 'udp', dport: 4 }), { verdict: 'drop', path: ['f/in:4'] });
  t.equal(nft.trace({ ...p, protocol: 'udp', dport: 5 }).verdict, 'accept');
});

t.test('what the tracer does not understand is named', async (t) => {
  const nft = new FakeNft();
  await nft.apply('add table ip x\nadd chain ip x pre { type filter hook prerouting priority 0 ; }\nadd rule ip x pre limit rate 10/second accept\n');
  t.throws(() => nft.trace({ family: 4, saddr: '1.1.1.1', daddr: '2.2.2.2', protocol: 'tcp', dport: 1, hook: 'prerouting' }), { message: /tracer does not understand: limit rate 10\/second accept/ });
  t.equal(nft.trace({ family: 4, saddr: '1.1.1.1', daddr: '2.2.2.2', protocol: 'tcp', dport: 1, hook: 'input' }).verdict, 'accept', 'other hooks are fine');
});

t.test('failNext and the recorded scripts still work', async (t) => {
  const n = new FakeNft();
  await n.apply('add table inet podwire\n');
  t.equal(n.last, 'add table inet podwire\n');
  n.failNext(2);
  await t.rejects(n.apply('add table inet x\nbogus\n'), { name: 'CommandError', message: /script line 2: bogus/ });
  t.equal(n.scripts.length, 1);
});
