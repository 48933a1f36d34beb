/**
 * The iptables proxier against the real kernel of lab nodes (iptables-legacy by default,
 * `auto`; the first test repeats its core on the iptables-nft backend): the same behaviour
 * as nftables.test.ts / host.test.ts, plus restarts under a request loop and the mode
 * switch nftables → iptables → nftables leaving nothing of the other mode behind.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec, labTest, type Lab } from '../harness';
import { slice, svc } from '../../src/proxy/testing';
import { connectOutcome, get, iptablesHost, namedServer, proxyHost, servedNode, udpAsk } from './helpers';

const HOST = path.join(__dirname, 'host.js');
const eps = (ips: string[]) => ips.map((ip) => ({ ip, node: 'node-a' }));

/** Our chains in both iptables backends and both families, and our nft table: what a mode switch must leave empty. */
async function leftovers(ns: string): Promise<{ chains: string[]; nft: boolean }> {
  const chains: string[] = [];
  for (const bin of ['iptables-legacy-save', 'ip6tables-legacy-save', 'iptables-nft-save', 'ip6tables-nft-save']) {
    for (const table of ['nat', 'filter']) {
      const r = await exec(ns, [bin, '-t', table]);
      for (const l of r.stdout.split('\n')) if (/^:(PODWIRE-(SERVICES|NODEPORTS|POSTROUTING|MARK-MASQ|EXT-SERVICES|PROXY-FW|FORWARD)|PW-(SVC|SVL|EXT|FW|SEP)-)/.test(l) || /-j PODWIRE-/.test(l)) chains.push(`${bin} ${table} ${l}`);
    }
  }
  const tables = await exec(ns, ['nft', 'list', 'tables']);
  return { chains, nft: /^table inet podwire$/m.test(tables.stdout) };
}

for (const backend of ['auto', 'nft'] as const) {
  labTest(`iptables proxy (${backend} backend): ClusterIP, named targetPort, NodePort, REJECT, affinity, endpoint change, UDP conntrack, hairpin`, { prefix: backend === 'auto' ? 'qi-ipt' : 'qi-iptn', requires: ['veth', 'conntrack'], timeout: 170_000 }, async (t, lab) => {
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
    // iptables can REJECT only in filter INPUT/FORWARD/OUTPUT, after routing: like any real
    // node, this one needs a route for the Service CIDR (a default route is enough).
    await lab.ip(node.ns, ['route', 'add', '10.96.0.0/12', 'via', outside.ip]);
    const host = await iptablesHost(node, { iptablesBackend: backend });
    t.teardown(() => host.close());
    const save = async (table: string): Promise<string> => (await exec(node.ns, [backend === 'nft' ? 'iptables-nft-save' : 'iptables-legacy-save', '-t', table])).stdout;

    await host.apply(
      svc('ns/web', '10.96.0.10', { type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: 'web', nodePort: 30080 }] }),
      slice('ns/web', eps(['10.244.1.2', '10.244.1.3', '10.244.1.4']), [{ name: 'http', port: 8080 }]),
    );
    t.match(await save('nat'), /-A PREROUTING .*-j PODWIRE-SERVICES/, `rules are in the ${backend} backend`);
    const seen = new Set<string>();
    for (let i = 0; i < 30 && seen.size < 3; i++) {
      const r = await get(client, 'http://10.96.0.10/');
      t.ok(r.ok, `GET ${i} ${r.err}`);
      seen.add(r.body.split(' ')[0]!);
    }
    t.same([...seen].sort(), ['p1', 'p2', 'p3'], 'ClusterIP spreads over the 3 endpoints (targetPort by name)');
    t.equal((await get(client, 'http://10.96.0.10/')).body.split(' ')[1], '10.244.1.10', 'pod-to-Service keeps the pod source');
    const np = await get(outside.ns, `http://${node.ip}:30080/`);
    t.ok(np.ok && /^p[123] /.test(np.body), `NodePort from outside answers: ${np.body} ${np.err}`);

    await host.apply(svc('ns/empty', '10.96.0.20', { type: 'NodePort', ports: [{ port: 80, nodePort: 30099 }] }));
    const refused = await connectOutcome(client, '10.96.0.20', 80, 5);
    t.equal(refused.outcome, 'ConnectionRefusedError', `refused, not a timeout (${refused.outcome})`);
    t.ok(refused.ms < 2000, `answered at once (${refused.ms} ms)`);
    t.equal((await connectOutcome(outside.ns, node.ip, 30099, 5)).outcome, 'ConnectionRefusedError', 'NodePort without endpoints: refused');

    await host.apply(
      svc('ns/aff', '10.96.0.30', { sessionAffinity: 'ClientIP', affinityTimeout: 60, ports: [{ name: 'http', port: 80 }] }),
      slice('ns/aff', eps(['10.244.1.2', '10.244.1.3', '10.244.1.4']), [{ name: 'http', port: 8080 }]),
    );
    const affinity = new Set<string>();
    for (let i = 0; i < 8; i++) affinity.add((await get(client, 'http://10.96.0.30/')).body.split(' ')[0]!);
    t.equal(affinity.size, 1, `ClientIP affinity keeps one endpoint (${[...affinity].join(',')})`);

    await host.apply(slice('ns/web', eps(['10.244.1.3']), [{ name: 'http', port: 8080 }]));
    t.equal(host.proxier.lastSync?.restores, 1, 'one endpoint change: one restore');
    t.ok((host.proxier.lastSync?.changedChains ?? 99) <= 5, `only the Service's chains rewritten (${host.proxier.lastSync?.changedChains})`);
    const after = new Set<string>();
    for (let i = 0; i < 6; i++) after.add((await get(client, 'http://10.96.0.10/')).body.split(' ')[0]!);
    t.same([...after], ['p2'], 'only the remaining endpoint answers after one sync');

    await host.apply(
      svc('ns/dns', '10.96.0.53', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
      slice('ns/dns', eps(['10.244.1.3']), [{ name: 'dns', port: 5353, protocol: 'UDP' }]),
    );
    t.equal(await udpAsk(client, '10.96.0.53', 53, 40053), 'p2', 'UDP through the VIP');
    await host.apply(slice('ns/dns', eps(['10.244.1.4']), [{ name: 'dns', port: 5353, protocol: 'UDP' }]));
    t.equal(await udpAsk(client, '10.96.0.53', 53, 40053), 'p3', 'same client flow reaches the new endpoint: the stale entry was deleted');

    await host.apply(svc('ns/hp', '10.96.0.40', { ports: [{ name: 'http', port: 80 }] }), slice('ns/hp', eps(['10.244.1.2']), [{ name: 'http', port: 8080 }]));
    const hp = await get(pods[0]!, 'http://10.96.0.40/');
    t.ok(hp.ok, `hairpin answers ${hp.err}`);
    t.equal(hp.body.split(' ')[0], 'p1');

    for (const k of ['ns/web', 'ns/empty', 'ns/aff', 'ns/dns', 'ns/hp']) await host.remove('Service', k);
    t.notMatch(await save('nat'), /PW-(SVC|SEP)-/, 'no per-Service chain left');
    t.notMatch(await save('filter'), /10\.96\.0\./, 'no REJECT left');
  });
}

function spawnHost(lab: Lab, ns: string, objects: string, nodeName: string) {
  return lab.spawn(ns, [process.execPath, HOST, '--objects', objects, '--node-name', nodeName, '--healthz', '127.0.0.1:10256', '--mode', 'iptables']);
}

labTest('iptables proxy host: LB IP, externalIP, eTP Local, healthCheckNodePort, source ranges, SIGTERM and kill -9 restarts', { prefix: 'qi-host', requires: ['veth', 'conntrack'], timeout: 170_000 }, async (t, lab) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ipt-host-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ul = await lab.addUnderlay();
  const a = await lab.addNode(ul);
  const b = await lab.addNode(ul);
  const out = await lab.addNode(ul, { role: 'out' });
  const pod = await lab.addPod('pa');
  await lab.wirePod(pod, a, { address: '10.244.1.2', gateway: '10.244.1.1' });
  await namedServer(lab, pod, 'pa');
  await lab.ip(out.ns, ['route', 'add', '198.19.0.10/31', 'via', a.ip]);
  await lab.ip(out.ns, ['route', 'add', '198.19.0.12/31', 'via', a.ip]);
  const objects = path.join(dir, 'objects.json');
  writeFileSync(
    objects,
    JSON.stringify([
      svc('ns/lb', '10.96.0.10', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.10'], externalIPs: ['198.19.0.11'], externalTrafficPolicy: 'Local', healthCheckNodePort: 32080, ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
      slice('ns/lb', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'http', port: 8080 }]),
      svc('ns/fw-deny', '10.96.0.12', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.12'], loadBalancerSourceRanges: ['203.0.113.0/24'], ports: [{ name: 'http', port: 80, nodePort: 30081 }] }),
      slice('ns/fw-deny', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'http', port: 8080 }]),
      svc('ns/fw-allow', '10.96.0.13', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.13'], loadBalancerSourceRanges: ['198.18.0.0/24'], ports: [{ name: 'http', port: 80, nodePort: 30082 }] }),
      slice('ns/fw-allow', [{ ip: '10.244.1.2', node: 'node-a' }], [{ name: 'http', port: 8080 }]),
    ]),
  );
  let ha = spawnHost(lab, a.ns, objects, 'node-a');
  const hb = spawnHost(lab, b.ns, objects, 'node-b');
  await ha.waitForOutput(/synced/, 30_000);
  await hb.waitForOutput(/synced/, 30_000);

  const lb = await get(out.ns, 'http://198.19.0.10/');
  t.equal(lb.body, `pa ${out.ip}`, `LoadBalancer IP answers, eTP Local keeps the client IP ${lb.err}`);
  t.equal((await get(out.ns, 'http://198.19.0.11/')).body, `pa ${out.ip}`, 'externalIP answers, client IP kept');
  t.equal((await get(out.ns, `http://${a.ip}:30080/`)).body, `pa ${out.ip}`, 'NodePort on the node with the endpoint');
  t.equal((await connectOutcome(out.ns, b.ip, 30080, 2)).outcome, 'TimeoutError', 'NodePort on a node without a local endpoint: dropped');
  t.equal((await connectOutcome(out.ns, '198.19.0.12', 80, 2)).outcome, 'TimeoutError', 'loadBalancerSourceRanges: a source outside is dropped');
  const allowed = await get(out.ns, 'http://198.19.0.13/');
  t.ok(allowed.ok && allowed.body.startsWith('pa '), `loadBalancerSourceRanges: a source inside gets through (${allowed.body}${allowed.err})`);
  const hc = async (ip: string): Promise<[string, string]> => {
    const r = await exec(out.ns, ['curl', '-sS', '--max-time', '3', '-w', '\n%{http_code}', `http://${ip}:32080/`]);
    const [body, code] = r.stdout.trim().split('\n');
    return [body ?? '', code ?? ''];
  };
  const [bodyA, codeA] = await hc(a.ip);
  t.equal(codeA, '200', 'healthCheckNodePort: 200 where the endpoint is');
  t.same(JSON.parse(bodyA || '{}'), { service: { namespace: 'ns', name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: true });
  t.equal((await hc(b.ip))[1], '503', 'healthCheckNodePort: 503 without a local endpoint');
  const hz = await exec(a.ns, ['curl', '-sS', '--max-time', '3', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:10256/healthz']);
  t.equal(hz.stdout, '200', '/healthz 200 after a sync');

  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    let failed = 0;
    let done = 0;
    let stop = false;
    const loop = (async () => {
      for (let i = 0; i < 200 && !stop; i++) {
        const r = await get(out.ns, 'http://198.19.0.10/', 2);
        if (!r.ok) failed++;
        done++;
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    if (how === 'SIGKILL') process.kill(-ha.pid!, 'SIGKILL');
    else process.kill(-ha.pid!, 'SIGTERM');
    await ha.exited;
    await new Promise((r) => setTimeout(r, 300));
    ha = spawnHost(lab, a.ns, objects, 'node-a');
    const synced = await ha.waitForOutput(/synced (\{.*\})/, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await loop;
    t.ok(done >= 3, `${how}: ${done} requests during the restart`);
    t.equal(failed, 0, `${how}: no failed request across the restart`);
    t.match(ha.stdout + ha.stderr, /adopted the existing iptables chains/, `${how}: the restart adopted the chains`);
    t.equal((JSON.parse(synced[1]!) as { restores: number }).restores, 0, `${how}: the first sync after the restart writes nothing`);
  }
  t.equal((await ha.stop()).exitCode, 0, 'SIGTERM: clean exit');
  await hb.stop();
});

labTest('proxy mode switch nftables → iptables → nftables leaves no leftovers of the other mode', { prefix: 'qi-switch', requires: ['veth', 'nftables'], timeout: 120_000 }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const node = await lab.addNode(ul);
  const p = await lab.addPod('p1');
  await lab.wirePod(p, node, { address: '10.244.1.2', gateway: '10.244.1.1' });
  await namedServer(lab, p, 'p1');
  const client = await lab.addPod('pc');
  await lab.wirePod(client, node, { address: '10.244.1.10', gateway: '10.244.1.1' });
  const outside = await lab.addNode(ul);
  await lab.ip(node.ns, ['route', 'add', '10.96.0.0/12', 'via', outside.ip]);
  // Someone else's rules, which no mode may touch.
  await exec(node.ns, ['iptables-legacy', '-t', 'nat', '-N', 'KUBE-SERVICES']);
  await exec(node.ns, ['iptables-legacy', '-t', 'nat', '-A', 'PREROUTING', '-j', 'KUBE-SERVICES']);
  await exec(node.ns, ['nft', 'add table inet other']);
  const objs = [svc('ns/web', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] }), slice('ns/web', eps(['10.244.1.2']), [{ name: 'http', port: 8080 }]), svc('ns/empty', '10.96.0.20')];
  const check = async (label: string): Promise<void> => {
    const r = await get(client, 'http://10.96.0.10/');
    t.equal(r.body.split(' ')[0], 'p1', `${label}: the Service answers`);
    t.equal((await connectOutcome(client, '10.96.0.20', 80, 3)).outcome, 'ConnectionRefusedError', `${label}: no endpoints → refused`);
  };

  const n1 = await proxyHost(node);
  await n1.apply(...objs);
  await check('nftables');
  await n1.close();
  t.equal((await leftovers(node.ns)).nft, true, 'the nftables table stays after a stop (restarts adopt it)');

  const i1 = await iptablesHost(node);
  await i1.apply(...objs);
  await check('iptables');
  let l = await leftovers(node.ns);
  t.equal(l.nft, false, 'starting in iptables mode removed our nftables table');
  t.ok(l.chains.length > 0, 'iptables chains are there');
  await i1.close();

  const n2 = await proxyHost(node);
  await n2.apply(...objs);
  await check('nftables again');
  l = await leftovers(node.ns);
  t.same(l.chains, [], 'starting in nftables mode removed every iptables chain and jump of ours');
  t.equal(l.nft, true);
  await n2.proxier.cleanup(new AbortController().signal);
  await n2.close();
  t.same(await leftovers(node.ns), { chains: [], nft: false }, '--cleanup removes the rest');
  t.match((await exec(node.ns, ['iptables-legacy-save', '-t', 'nat'])).stdout, /-A PREROUTING -j KUBE-SERVICES/, 'others\' iptables rules untouched');
  t.match((await exec(node.ns, ['nft', 'list', 'tables'])).stdout, /table inet other/, 'others\' nft table untouched');
});

labTest('iptables proxy (nft backend): Services programmed together in chunks of restores all answer, and the top chains come last', { prefix: 'qi-iptc', requires: ['veth', 'conntrack'], timeout: 120_000 }, async (t, lab) => {
  const { node, outside, client } = await servedNode(lab);
  await lab.ip(node.ns, ['route', 'add', '10.96.0.0/12', 'via', outside.ip]);
  const host = await iptablesHost(node, { iptablesBackend: 'nft' }, 'node-a', { nftChunkServices: 2 });
  t.teardown(() => host.close());
  const objs = [];
  for (let i = 0; i < 7; i++) objs.push(svc(`ns/s${i}`, `10.96.1.${i + 1}`, { ports: [{ name: 'http', port: 80 }] }), slice(`ns/s${i}`, eps([`10.244.1.${(i % 3) + 2}`]), [{ name: 'http', port: 8080 }]));
  await host.apply(...objs);
  const s = host.proxier.lastSync!;
  t.equal(s.restores, 1 + 4 + 1, 'the fixed chains, 4 chunks of at most 2 Services, then the top chains');
  for (let i = 0; i < 7; i++) {
    const r = await get(client, `http://10.96.1.${i + 1}/`);
    t.ok(r.ok && r.body.startsWith(`p${(i % 3) + 1} `), `ns/s${i} answers from its endpoint: ${r.body} ${r.err}`);
  }
  const saved = (await exec(node.ns, ['iptables-nft-save', '-t', 'nat'])).stdout;
  t.equal(saved.split('\n').filter((l) => /^-A PODWIRE-SERVICES .*-j PW-SVC-/.test(l)).length, 7, 'one jump per Service in the top chain');
});
