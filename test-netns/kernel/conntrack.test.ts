// conntrack over ctnetlink against the real kernel: flows DNATed by nft in a namespace,
// list() and `conntrack -L` agree, delete() removes exactly the matching entries.
import { labTest, execOk, exec } from '../harness';
import { openKernel, netnsRef, NetlinkConntrack } from '../../src/kernel';

/** Sends UDP and TCP flows from 10.244.1.100 to the VIPs (nft DNATs them to the 10.244.1.x endpoints). */
const TRAFFIC = `
const dgram = require('node:dgram'), net = require('node:net');
const servers = [];
const udpServe = (ip, port) => new Promise((r) => { const s = dgram.createSocket('udp4'); s.on('message', (m, from) => s.send('ok', from.port, from.address)); s.bind(port, ip, r); servers.push(s); });
const tcpServe = (ip, port) => new Promise((r) => { const s = net.createServer((c) => c.end('x')).listen(port, ip, r); servers.push(s); });
const udp = (ip, port) => new Promise((r, j) => { const c = dgram.createSocket('udp4'); c.bind(0, '10.244.1.100', () => c.send('hi', port, ip, (e) => e ? j(e) : c.once('message', () => { c.close(); r(); }))); });
const tcp = (ip, port) => new Promise((r, j) => { const c = net.connect({ host: ip, port, localAddress: '10.244.1.100' }); c.on('data', () => {}); c.on('error', j); c.on('close', r); });
(async () => {
  await udpServe('10.244.1.5', 5353); await udpServe('10.244.1.6', 5353); await tcpServe('10.244.1.5', 8080);
  for (let i = 0; i < 3; i++) await udp('10.96.0.10', 53);
  await udp('10.96.0.11', 53);
  await tcp('10.96.0.10', 80);
  await tcp('10.96.0.10', 80);
  for (const s of servers) s.close();
})().catch((e) => { console.error(e); process.exit(1); });
`;

const RULES = [
  'table ip pwkn {',
  '  chain out {',
  '    type nat hook output priority -100; policy accept;',
  '    ip daddr 10.96.0.10 udp dport 53 dnat to 10.244.1.5:5353',
  '    ip daddr 10.96.0.11 udp dport 53 dnat to 10.244.1.6:5353',
  '    ip daddr 10.96.0.10 tcp dport 80 dnat to 10.244.1.5:8080',
  '  }',
  '}',
  '',
].join('\n');

interface CtLine {
  protocol: string;
  src: string;
  dst: string;
  dport: number;
  replySrc: string;
  replySport: number;
}

function parseConntrackL(text: string): CtLine[] {
  const out: CtLine[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s.*?src=(\S+) dst=(\S+) sport=\d+ dport=(\d+) .*?src=(\S+) dst=\S+ sport=(\d+)/.exec(line);
    if (m) out.push({ protocol: m[1]!, src: m[2]!, dst: m[3]!, dport: Number(m[4]), replySrc: m[5]!, replySport: Number(m[6]) });
  }
  return out;
}

const key = (e: { protocol: string | number; src: string; dst: string; dport?: number; dstPort?: number; replySrc: string }): string =>
  `${String(e.protocol)} ${e.src} ${e.dst}:${e.dport ?? e.dstPort} <- ${e.replySrc}`;

labTest('conntrack: list sees DNATed flows like conntrack -L; delete removes exactly the matching ones', { prefix: 'pwkn-ct', requires: ['nftables', 'conntrack'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  for (const ip of ['10.244.1.5/32', '10.244.1.6/32', '10.244.1.100/32']) await execOk(ns, ['ip', 'addr', 'add', ip, 'dev', 'lo']);
  await execOk(ns, ['ip', 'route', 'add', 'local', '10.96.0.0/12', 'dev', 'lo']);
  await execOk(ns, ['nft', '-f', '-'], { input: RULES });
  await execOk(ns, [process.execPath, '-e', TRAFFIC]);

  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  const all = await k.conntrack.list();
  const cli = parseConntrackL(await execOk(ns, ['conntrack', '-L']));
  t.same(all.map(key).sort(), cli.map(key).sort(), 'same entries as conntrack -L');
  const udp10 = all.filter((e) => e.protocol === 'udp' && e.dst === '10.96.0.10');
  t.equal(udp10.length, 3, 'three UDP flows to 10.96.0.10:53');
  for (const e of udp10) t.match(e, { family: 4, src: '10.244.1.100', dstPort: 53, replySrc: '10.244.1.5', replySrcPort: 5353, mark: 0 });
  t.equal(all.filter((e) => e.protocol === 'tcp').length, 2, 'two TCP flows');
  t.match(await k.conntrack.list({ dst: '10.96.0.11' }), [{ protocol: 'udp', replySrc: '10.244.1.6' }]);
  t.equal((await k.conntrack.list({ replySrc: '10.244.1.5', protocol: 'tcp' })).length, 2, 'filter by reply source');
  t.same(await k.conntrack.list({ family: 6 }), [], 'no IPv6 entries');

  t.equal(await k.conntrack.delete({ protocol: 'udp', dst: '10.96.0.10', dstPort: 53 }), 3, 'deleted the three');
  const left = await k.conntrack.list();
  t.same(left.map(key).sort(), all.filter((e) => !udp10.includes(e)).map(key).sort(), 'the others are left');
  const cliLeft = parseConntrackL(await execOk(ns, ['conntrack', '-L']));
  t.equal(cliLeft.length, 3, 'conntrack -L agrees');
  t.equal(await k.conntrack.delete({ protocol: 'udp', dst: '10.96.0.10', dstPort: 53 }), 0, 'nothing left to delete');

  // An entry that vanishes between the dump and the delete is not an error.
  const ct = new NetlinkConntrack(netnsRef(ns));
  t.teardown(() => ct.close());
  const recs = await ct.records({ dst: '10.96.0.11' });
  t.equal(recs.length, 1);
  await execOk(ns, ['conntrack', '-D', '-d', '10.96.0.11']);
  const origRecords = ct.records.bind(ct);
  ct.records = async () => recs; // replay the stale dump
  t.equal(await ct.delete({ dst: '10.96.0.11' }), 0, 'ENOENT counts as gone, not as an error');
  ct.records = origRecords;
  const root = await exec(null, ['conntrack', '-L', '-d', '10.96.0.10']);
  t.notMatch(root.stdout, /10\.244\.1\.5/, 'root namespace has none of these');
});

labTest('conntrack: IPv6 flows through an ip6 DNAT, listed and deleted by family', { prefix: 'pwkn-ct', requires: ['nftables', 'conntrack'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  for (const ip of ['fd00:244::5/128', 'fd00:244::100/128']) await execOk(ns, ['ip', '-6', 'addr', 'add', ip, 'dev', 'lo', 'nodad']);
  await execOk(ns, ['ip', '-6', 'route', 'add', 'local', 'fd00:96::/64', 'dev', 'lo']);
  await execOk(ns, ['nft', '-f', '-'], { input: 'table ip6 pwkn {\n  chain out {\n    type nat hook output priority -100; policy accept;\n    ip6 daddr fd00:96::10 udp dport 53 dnat to [fd00:244::5]:5353\n  }\n}\n' });
  const traffic = `
const dgram = require('node:dgram');
const s = dgram.createSocket('udp6'); s.on('message', (m, f) => s.send('ok', f.port, f.address));
s.bind(5353, 'fd00:244::5', () => {
  const c = dgram.createSocket('udp6');
  c.bind(0, 'fd00:244::100', () => c.send('hi', 53, 'fd00:96::10', () => c.once('message', () => { c.close(); s.close(); })));
});`;
  await execOk(ns, [process.execPath, '-e', traffic]);
  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  const v6 = await k.conntrack.list({ family: 6, protocol: 'udp' });
  t.match(v6, [{ family: 6, src: 'fd00:244::100', dst: 'fd00:96::10', dstPort: 53, replySrc: 'fd00:244::5', replySrcPort: 5353 }]);
  t.equal((await k.conntrack.list({ dst: 'FD00:96:0::10' })).length, 1, 'addresses compared in canonical form');
  t.same(await k.conntrack.list({ family: 4, protocol: 'udp' }), []);
  t.equal(await k.conntrack.delete({ replySrc: 'fd00:244::5' }), 1);
  t.notMatch(await execOk(ns, ['conntrack', '-L', '-f', 'ipv6']), /fd00:96::10/, 'conntrack -L agrees');
});

/** Inodes of this process's NETLINK_NETFILTER sockets that live in `ns` (/proc/net/netlink read inside it). */
async function netfilterSockets(ns: string): Promise<string[]> {
  const { readdirSync, readlinkSync } = await import('node:fs');
  const mine = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) mine.add(m[1]!);
    } catch {
      // the fd closed meanwhile (readdir's own, a worker's)
    }
  }
  const out: string[] = [];
  // Columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode; Eth 12 is NETLINK_NETFILTER.
  for (const line of (await execOk(ns, ['cat', '/proc/net/netlink'])).split('\n').slice(1)) {
    const c = line.trim().split(/\s+/);
    if (c[1] === '12' && mine.has(c[9] ?? '')) out.push(c[9]!);
  }
  return out;
}

labTest('conntrack and the nft reads share one NETLINK_NETFILTER socket; concurrent dumps do not mix', { prefix: 'pwh4-ct', requires: ['nftables', 'conntrack'] }, async (t, lab) => {
  const ns = await lab.addNetns('a');
  for (const ip of ['10.244.1.5/32', '10.244.1.6/32', '10.244.1.100/32']) await execOk(ns, ['ip', 'addr', 'add', ip, 'dev', 'lo']);
  await execOk(ns, ['ip', 'route', 'add', 'local', '10.96.0.0/12', 'dev', 'lo']);
  await execOk(ns, ['nft', '-f', '-'], { input: RULES });
  // An inet table for readTable/rulePrints (added with the nft binary: libnftables would open a socket of its own).
  await execOk(ns, ['nft', '-f', '-'], { input: 'table inet pwh4 {\n  set vips { type ipv4_addr; elements = { 10.96.0.10, 10.96.0.11 } }\n  chain c { ip daddr @vips counter accept; }\n}\n' });
  await execOk(ns, [process.execPath, '-e', TRAFFIC]);

  const k = await openKernel(netnsRef(ns));
  t.teardown(() => k.close());
  t.same(await netfilterSockets(ns), [], 'none before the first use');
  const all = await k.conntrack.list();
  const first = await netfilterSockets(ns);
  t.equal(first.length, 1, 'conntrack opened one');
  const gen = await k.nft.generation();
  const table = await k.nft.readTable!('pwh4', () => false);
  const prints = await k.nft.rulePrints('inet', 'pwh4');
  t.same(await netfilterSockets(ns), first, 'the nft reads use the same socket');

  // Everything at once: the transport runs one operation at a time, each gets its own answer.
  const [list2, gen2, table2, prints2, udp10, deleted] = await Promise.all([
    k.conntrack.list(),
    k.nft.generation(),
    k.nft.readTable!('pwh4', () => false),
    k.nft.rulePrints('inet', 'pwh4'),
    k.conntrack.list({ protocol: 'udp', dst: '10.96.0.10' }),
    k.conntrack.delete({ protocol: 'udp', dst: '10.96.0.11' }),
  ]);
  t.same(list2.map(key).sort(), all.map(key).sort(), 'conntrack list: the same entries');
  t.equal(gen2.generation, gen.generation, 'generation: the same');
  t.same([...table2.elements.get('vips')!.keys()].sort(), ['10.96.0.10', '10.96.0.11'], 'table read: the set elements');
  t.same(table2.handles, table.handles, 'table read: the same rules');
  t.same([...prints2], [...prints], 'rule prints: the same');
  t.equal(udp10.length, 3, 'a filtered list amid the others');
  t.equal(deleted, 1, 'a delete amid the others');
  t.same(await netfilterSockets(ns), first, 'still the one socket');
  k.close();
  // Closing is asynchronous (after queued work); poll /proc, bounded, no timing asserted.
  let left = first;
  for (let i = 0; i < 100 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    left = await netfilterSockets(ns);
  }
  t.same(left, [], 'closed with the kernel handle');
});
