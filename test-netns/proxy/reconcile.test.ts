/**
 * The periodic reconcile against the real kernel: the proxier runs in a lab node's namespace
 * under the daemon's bounded-frequency runner with a short syncPeriod; something deletes one
 * Service's element / rule behind its back and adds a stray one to our map / chain; the next
 * periodic sync must repair exactly that (real traffic to the VIP answers again, the stray is
 * gone) and leave the rest alone (an unrelated chain keeps its rule handles / counters).
 */
import { exec, labTest } from '../harness';
import { slice, svc } from '../../src/proxy/testing';
import { parseTable } from '../../src/proxy/adopt';
import { BoundedFrequencyRunner } from '../../src/daemon/runner';
import { get, iptablesHost, proxyHost, servedNode, type ProxyHost } from './helpers';
import type { IptablesProxier, NftProxier } from '../../src/proxy';

const PERIOD_MS = 1500;
const eps = (ips: string[]) => ips.map((ip) => ({ ip, node: 'node-a' }));


/**
 * Runs the proxier under the daemon's runner (maxInterval = syncPeriod, no events) until a
 * sync that read the kernel back has finished; bounded.
 */
async function awaitPeriodicSync<P extends NftProxier | IptablesProxier>(host: ProxyHost<P>, done: (p: P) => boolean): Promise<boolean> {
  const ac = new AbortController();
  let finished = false;
  let wake: (() => void) | undefined;
  const runner = new BoundedFrequencyRunner({
    name: 'proxy',
    fn: async (s) => {
      await host.proxier.sync(s);
    },
    minIntervalMs: 0,
    maxIntervalMs: PERIOD_MS,
    retryIntervalMs: 500,
    onRun: (o) => {
      if (o.ok && done(host.proxier)) {
        finished = true;
        wake?.();
      }
    },
  });
  // Let the period pass first: the first run of a started runner is immediate.
  await new Promise((r) => setTimeout(r, PERIOD_MS + 100));
  runner.start(ac.signal);
  const deadline = Date.now() + 6 * PERIOD_MS;
  while (!finished && Date.now() < deadline) await new Promise<void>((r) => ((wake = r), setTimeout(r, 200)));
  ac.abort();
  return finished;
}

async function serves(client: string, url: string, name: string): Promise<boolean> {
  const r = await get(client, url, 2);
  return r.ok && r.body.split(' ')[0] === name;
}

labTest('nftables proxy: the periodic sync repairs an element and a rule deleted behind its back and removes a stray element', { prefix: 'qrec-nft', requires: ['veth', 'nftables'], timeout: 120_000 }, async (t, lab) => {
  const { node: n, client } = await servedNode(lab);
  const host = await proxyHost(n, { syncPeriod: PERIOD_MS });
  t.teardown(() => host.close());
  await host.apply(
    svc('ns/web', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] }),
    slice('ns/web', eps(['10.244.1.2', '10.244.1.3']), [{ name: 'http', port: 8080 }]),
    svc('ns/other', '10.96.0.11', { ports: [{ name: 'http', port: 80 }] }),
    slice('ns/other', eps(['10.244.1.4']), [{ name: 'http', port: 8080 }]),
    // The other kinds of elements and chains, so the quiet read-back below proves the parser
    // reads every one back as we render it (else each period would "repair" them again).
    svc('ns/np', '10.96.0.12', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }, { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }] }),
    slice('ns/np', eps(['10.244.1.2']), [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }]),
    svc('ns/empty', '10.96.0.13', { type: 'NodePort', ports: [{ port: 80, nodePort: 30099 }] }),
    svc('ns/aff', '10.96.0.14', { sessionAffinity: 'ClientIP', affinityTimeout: 60, ports: [{ name: 'http', port: 80 }] }),
    slice('ns/aff', eps(['10.244.1.2', '10.244.1.3']), [{ name: 'http', port: 8080 }]),
    svc('ns/lb', '10.96.0.15', { type: 'LoadBalancer', loadBalancerIPs: ['198.19.0.40'], externalIPs: ['198.19.0.41'], loadBalancerSourceRanges: ['198.18.7.0/24', '198.18.9.9/32'], externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30040 }] }),
    slice('ns/lb', eps(['10.244.1.4']), [{ name: 'http', port: 8080 }]),
    svc('ns/v6', ['fd00:96::10'], { ports: [{ port: 80 }] }),
    slice('ns/v6', ['fd00:244::5'], [{ port: 8081 }], { addressType: 'IPv6' }),
    svc('ns/hp', '10.96.0.16', { ports: [{ name: 'http', port: 80 }] }),
    slice('ns/hp', eps(['10.244.1.3']), [{ name: 'http', port: 8080 }]),
  );
  t.ok(await serves(client, 'http://10.96.0.11/', 'p3'), 'ns/other answers');
  t.ok(/^p[12]$/.test((await get(client, 'http://10.96.0.10/')).body.split(' ')[0]!), 'ns/web answers');
  // One quiet periodic sync first: nothing to repair, nothing applied; it learns the chains' prints.
  const quiet = await awaitPeriodicSync(host, (p) => p.lastSync?.readBack !== undefined);
  t.ok(quiet, 'a periodic sync ran');
  if (host.proxier.lastSync?.readBack?.drift !== 0) t.comment((await exec(n.ns, ['nft', 'list', 'table', 'inet', 'podwire'])).stdout);
  t.equal(host.proxier.lastSync?.readBack?.drift, 0, 'no drift on a clean table (every kind of element, chain and rule read back as rendered)');
  t.equal(host.proxier.lastSync?.transactions, 0, 'and no transaction');

  const listing = async (): Promise<ReturnType<typeof parseTable>> => parseTable(JSON.parse((await exec(n.ns, ['nft', '-j', 'list', 'table', 'inet', 'podwire'])).stdout), 'podwire', (s) => s.startsWith('affinity'));
  const before = await listing();
  const dnat = before.handles.get('lb4c-tcp-2')!;
  t.ok(dnat && dnat.length === 2, `ns/web's shared chain lb4c-tcp-2 has its 2 rules (${dnat})`);
  const otherHandles = JSON.stringify(before.handles.get('lb4c-tcp-1'));
  const servicesHandles = JSON.stringify(before.handles.get('services'));
  t.equal(before.elements.get('services4')?.get('10.96.0.11 . tcp . 80'), 'goto lb4c-tcp-1', 'ns/other element');

  // Behind podwired's back: ns/web's VIP element and its DNAT rule go, a stray VIP comes.
  const nft = async (...argv: string[]): Promise<void> => {
    const r = await exec(n.ns, ['nft', ...argv]);
    t.equal(r.exitCode, 0, `nft ${argv.join(' ')} ${r.stderr}`);
  };
  await nft('delete', 'element', 'inet', 'podwire', 'services4', '{ 10.96.0.10 . tcp . 80 }');
  await nft('delete', 'rule', 'inet', 'podwire', 'lb4c-tcp-2', 'handle', String(dnat[1]));
  await nft('add', 'element', 'inet', 'podwire', 'services4', '{ 10.96.0.99 . tcp . 80 : goto lb4c-tcp-1 }');
  t.notOk(await serves(client, 'http://10.96.0.10/', 'p1') || (await serves(client, 'http://10.96.0.10/', 'p2')), 'ns/web is broken');

  const repaired = await awaitPeriodicSync(host, (p) => (p.lastSync?.readBack?.drift ?? 0) > 0);
  t.ok(repaired, `a periodic sync found the drift (${JSON.stringify(host.proxier.lastSync)})`);
  t.equal(host.proxier.lastSync?.transactions, 1, 'repaired in one transaction');
  const seen = new Set<string>();
  for (let i = 0; i < 20 && seen.size < 2; i++) {
    const r = await get(client, 'http://10.96.0.10/');
    t.ok(r.ok, `GET ns/web ${i} ${r.err}`);
    if (!r.ok) break;
    seen.add(r.body.split(' ')[0]!);
  }
  t.same([...seen].sort(), ['p1', 'p2'], 'ns/web answers from both endpoints again');
  t.ok(await serves(client, 'http://10.96.0.11/', 'p3'), 'ns/other still answers');
  const after = await listing();
  t.equal(after.elements.get('services4')?.get('10.96.0.10 . tcp . 80'), 'goto lb4c-tcp-2', 'the deleted element is back');
  t.notOk(after.elements.get('services4')?.has('10.96.0.99 . tcp . 80'), 'the stray element is gone');
  t.equal(after.handles.get('lb4c-tcp-2')?.length, 2, 'the deleted rule is back');
  t.equal(JSON.stringify(after.handles.get('lb4c-tcp-1')), otherHandles, 'the unrelated chain kept its rule handles (not rebuilt)');
  t.equal(JSON.stringify(after.handles.get('services')), servicesHandles, 'so did the dispatch chain');
  t.equal(after.elements.get('services4')?.get('10.96.0.11 . tcp . 80'), 'goto lb4c-tcp-1', 'the unrelated element is as it was');
  t.same([...after.objects.keys()].sort(), [...before.objects.keys()].sort(), 'no object added or lost');
  // Converged: the next periodic sync applies nothing.
  t.ok(await awaitPeriodicSync(host, (p) => p.lastSync?.readBack !== undefined && p.lastSync.readBack.drift === 0));
  t.equal(host.proxier.lastSync?.transactions, 0, 'nothing left to repair');
});

labTest('iptables proxy: the periodic full sync repairs a rule deleted behind its back and removes a stray rule', { prefix: 'qrec-ipt', requires: ['veth'], timeout: 120_000 }, async (t, lab) => {
  const { node: n, outside, client } = await servedNode(lab);
  await lab.ip(n.ns, ['route', 'add', '10.96.0.0/12', 'via', outside.ip]);
  const host = await iptablesHost(n, { syncPeriod: PERIOD_MS });
  t.teardown(() => host.close());
  const save = async (): Promise<string> => (await exec(n.ns, ['iptables-legacy-save', '-c', '-t', 'nat'])).stdout;
  await host.apply(
    svc('ns/web', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] }),
    slice('ns/web', eps(['10.244.1.2']), [{ name: 'http', port: 8080 }]),
    svc('ns/other', '10.96.0.11', { ports: [{ name: 'http', port: 80 }] }),
    slice('ns/other', eps(['10.244.1.4']), [{ name: 'http', port: 8080 }]),
  );
  t.ok(await serves(client, 'http://10.96.0.10/', 'p1'), 'ns/web answers');
  t.ok(await serves(client, 'http://10.96.0.11/', 'p3'), 'ns/other answers');
  const s0 = await save();
  const webRule = s0.split('\n').find((l) => /^\[\d+:\d+\] -A PODWIRE-SERVICES .*-d 10\.96\.0\.10\/32/.test(l));
  t.ok(webRule, `ns/web's dispatch rule is there: ${webRule}`);
  // ns/other's own chain: its rules carry packet counters, which survive only if the chain is not rewritten.
  const otherChain = /-j (\S+)/.exec(s0.split('\n').find((l) => /-A PODWIRE-SERVICES .*-d 10\.96\.0\.11\/32/.test(l)) ?? '')?.[1];
  t.ok(otherChain, `ns/other's chain ${otherChain}`);
  const counters = (save: string, chain: string): string[] => save.split('\n').filter((l) => l.includes(`-A ${chain} `));
  const otherBefore = counters(await save(), otherChain!);
  t.ok(otherBefore.some((l) => !l.startsWith('[0:0]')), `ns/other's chain has counted packets: ${otherBefore.join(' | ')}`);

  const ipt = async (...argv: string[]): Promise<void> => {
    const r = await exec(n.ns, ['iptables-legacy', '-t', 'nat', ...argv]);
    t.equal(r.exitCode, 0, `iptables ${argv.join(' ')} ${r.stderr}`);
  };
  const position = s0.split('\n').filter((l) => / -A PODWIRE-SERVICES /.test(l)).indexOf(webRule!) + 1;
  await ipt('-D', 'PODWIRE-SERVICES', String(position));
  await ipt('-A', 'PODWIRE-SERVICES', '-d', '10.96.0.99/32', '-p', 'tcp', '--dport', '80', '-j', 'RETURN');
  t.notOk(await serves(client, 'http://10.96.0.10/', 'p1'), 'ns/web is broken');

  const repaired = await awaitPeriodicSync(host, (p) => p.lastSync?.full === true && (p.lastSync.changedChains ?? 0) > 0);
  t.ok(repaired, `a periodic full sync repaired it (${JSON.stringify(host.proxier.lastSync)})`);
  t.ok(await serves(client, 'http://10.96.0.10/', 'p1'), 'ns/web answers again');
  t.ok(await serves(client, 'http://10.96.0.11/', 'p3'), 'ns/other still answers');
  const s1 = await save();
  t.match(s1, /-A PODWIRE-SERVICES .*-d 10\.96\.0\.10\/32/, 'the deleted rule is back');
  t.notMatch(s1, /10\.96\.0\.99/, 'the stray rule is gone');
  const otherAfter = counters(s1, otherChain!);
  t.equal(otherAfter.length, otherBefore.length);
  t.ok(otherAfter.every((l, i) => Number(/^\[(\d+):/.exec(l)?.[1]) >= Number(/^\[(\d+):/.exec(otherBefore[i]!)?.[1])), `the unrelated chain kept its counters (not rewritten): ${otherAfter.join(' | ')}`);
});
