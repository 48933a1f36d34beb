/**
 * The nftables proxier against the real kernel of a lab node: pods on the node run
 * servers that answer with their own name; clients are a pod on the node and an
 * "outside" namespace on the underlay.
 */
import { labTest } from '../harness';
import { slice, svc } from '../../src/proxy/testing';
import { connectOutcome, get, namedServer, proxyHost, udpAsk } from './helpers';

labTest('nftables proxy: ClusterIP, NodePort, no endpoints, affinity, endpoint change, UDP conntrack, hairpin', { prefix: 'pwp-nft', requires: ['veth', 'nftables', 'conntrack'], timeout: 170_000 }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const outside = await lab.addNode(ul);
  const pods: string[] = [];
  for (let i = 1; i <= 3; i++) {
    const p = await lab.addPod(`p${i}`);
    await lab.wirePod(p, node, { address: `10.244.1.${i + 1}`, gateway: '10.244.1.1' });
    await namedServer(lab, p, `p${i}`);
    pods.push(p);
  }
  const client = await lab.addPod('pc');
  await lab.wirePod(client, node, { address: '10.244.1.10', gateway: '10.244.1.1' });
  const host = await proxyHost(node);
  t.teardown(() => host.close());
  const eps = (ips: string[]) => ips.map((ip) => ({ ip, node: 'node-a' }));

  // ClusterIP over 3 endpoints, targetPort by name (resolved through the slice's port named like the Service port).
  await host.apply(
    svc('ns/web', '10.96.0.10', { type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: 'web', nodePort: 30080 }] }),
    slice('ns/web', eps(['10.244.1.2', '10.244.1.3', '10.244.1.4']), [{ name: 'http', port: 8080 }]),
  );
  const seen = new Set<string>();
  for (let i = 0; i < 30 && seen.size < 3; i++) {
    const r = await get(client, 'http://10.96.0.10/');
    t.ok(r.ok, `GET ${i} ${r.err}`);
    seen.add(r.body.split(' ')[0]!);
  }
  t.same([...seen].sort(), ['p1', 'p2', 'p3'], 'ClusterIP spreads over the 3 endpoints');
  const src = await get(client, 'http://10.96.0.10/');
  t.equal(src.body.split(' ')[1], '10.244.1.10', 'pod-to-Service traffic keeps the pod source (no masquerade)');

  // NodePort from outside.
  const np = await get(outside.ns, `http://${node.ip}:30080/`);
  t.ok(np.ok && /^p[123] /.test(np.body), `NodePort from outside answers: ${np.body} ${np.err}`);

  // No endpoints: immediate refusal.
  await host.apply(svc('ns/empty', '10.96.0.20', { type: 'NodePort', ports: [{ port: 80, nodePort: 30099 }] }));
  const refused = await connectOutcome(client, '10.96.0.20', 80, 5);
  t.equal(refused.outcome, 'ConnectionRefusedError', `refused, not a timeout (${refused.outcome})`);
  t.ok(refused.ms < 2000, `answered at once (${refused.ms} ms)`);
  const np0 = await connectOutcome(outside.ns, node.ip, 30099, 5);
  t.equal(np0.outcome, 'ConnectionRefusedError', 'a NodePort of a Service without endpoints is refused too');

  // ClientIP affinity: one client sticks to one endpoint.
  await host.apply(
    svc('ns/aff', '10.96.0.30', { sessionAffinity: 'ClientIP', affinityTimeout: 60, ports: [{ name: 'http', port: 80 }] }),
    slice('ns/aff', eps(['10.244.1.2', '10.244.1.3', '10.244.1.4']), [{ name: 'http', port: 8080 }]),
  );
  const affinity = new Set<string>();
  for (let i = 0; i < 8; i++) affinity.add((await get(client, 'http://10.96.0.30/')).body.split(' ')[0]!);
  t.equal(affinity.size, 1, `ClientIP affinity keeps one endpoint (${[...affinity].join(',')})`);

  // An endpoint change takes effect with the next sync.
  await host.apply(slice('ns/web', eps(['10.244.1.3']), [{ name: 'http', port: 8080 }]));
  const after = new Set<string>();
  for (let i = 0; i < 6; i++) after.add((await get(client, 'http://10.96.0.10/')).body.split(' ')[0]!);
  t.same([...after], ['p2'], 'only the remaining endpoint answers');
  t.ok((host.proxier.lastSync?.elementChanges ?? 99) <= 8, `one small element transaction (${host.proxier.lastSync?.elementChanges} element changes)`);

  // UDP: the client's flow is pinned by conntrack; replacing the endpoint flushes it.
  await host.apply(
    svc('ns/dns', '10.96.0.53', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
    slice('ns/dns', eps(['10.244.1.3']), [{ name: 'dns', port: 5353, protocol: 'UDP' }]),
  );
  const direct = await udpAsk(client, '10.244.1.3', 5353, 40052);
  t.equal(direct, 'p2', 'UDP server answers directly');
  const viaVip = await udpAsk(client, '10.96.0.53', 53, 40053);
  if (viaVip !== 'p2') {
    t.comment((await lab.exec(node.ns, ['nft', 'list', 'table', 'inet', 'podwire'])).stdout);
    t.comment((await lab.exec(node.ns, ['conntrack', '-L'])).stdout);
  }
  t.equal(viaVip, 'p2', 'UDP through the VIP');
  await host.apply(slice('ns/dns', eps(['10.244.1.4']), [{ name: 'dns', port: 5353, protocol: 'UDP' }]));
  t.equal(await udpAsk(client, '10.96.0.53', 53, 40053), 'p3', 'same client flow reaches the new endpoint: the stale entry was deleted');

  // Hairpin: p1 reaches itself through its own Service.
  await host.apply(svc('ns/hp', '10.96.0.40', { ports: [{ name: 'http', port: 80 }] }), slice('ns/hp', eps(['10.244.1.2']), [{ name: 'http', port: 8080 }]));
  const hp = await get(pods[0]!, 'http://10.96.0.40/');
  t.ok(hp.ok, `hairpin answers ${hp.err}`);
  t.equal(hp.body.split(' ')[0], 'p1');

  // Delete everything: the maps empty out, the table stays.
  for (const k of ['ns/web', 'ns/empty', 'ns/aff', 'ns/dns', 'ns/hp']) await host.remove('Service', k);
  t.equal(host.proxier.ruleset.elementCount(), 0, 'no element left');
  const listed = await host.kernel.nft.list('table inet podwire');
  t.notMatch(listed, /10\.96\.0\.\d+ \./, 'no Service left in the kernel');
});

labTest('nftables proxy: IPv6 ClusterIP DNAT and no-endpoint REJECT (local client, one namespace)', { prefix: 'pwp-v6', requires: ['veth', 'nftables'], timeout: 60_000 }, async (t, lab) => {
  const ns = await lab.addNetns('v6');
  await lab.ip(ns, ['-6', 'addr', 'add', 'fd00:244::5/128', 'dev', 'lo']);
  await lab.ip(ns, ['link', 'add', 'v6a', 'type', 'veth', 'peer', 'name', 'v6b']);
  await lab.ip(ns, ['link', 'set', 'v6a', 'up']);
  await lab.ip(ns, ['link', 'set', 'v6b', 'up']);
  await lab.ip(ns, ['-6', 'addr', 'add', 'fd00:1::1/128', 'dev', 'v6a', 'nodad']);
  await lab.ip(ns, ['-6', 'route', 'add', 'fd00:96::/112', 'dev', 'v6a', 'src', 'fd00:1::1']);
  const server = lab.spawn(ns, ['python3', '-c', "import socket\ns=socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('::', 8081)); s.listen(5); print('ready', flush=True)\nfor _ in range(20):\n    c, a = s.accept(); c.send(b'v6 ok'); c.close()"]);
  await server.waitForOutput(/ready/, 10_000);
  const host = await proxyHost({ ns });
  t.teardown(() => host.close());
  await host.apply(
    svc('ns/v6', ['fd00:96::10'], { ports: [{ port: 80 }] }),
    slice('ns/v6', ['fd00:244::5'], [{ port: 8081 }], { addressType: 'IPv6' }),
    svc('ns/v6e', ['fd00:96::11'], { ports: [{ port: 80 }] }),
  );
  const code = (vip: string): string => `import socket\ntry:\n    s = socket.create_connection(('${vip}', 80), timeout=2); print(s.recv(100).decode())\nexcept Exception as e:\n    print(type(e).__name__)`;
  t.equal((await lab.exec(ns, ['python3', '-c', code('fd00:96::10')])).stdout.trim(), 'v6 ok', 'IPv6 ClusterIP reaches its endpoint');
  t.equal((await lab.exec(ns, ['python3', '-c', code('fd00:96::11')])).stdout.trim(), 'ConnectionRefusedError', 'IPv6 Service without endpoints: refused');
});
