import t, { type Test } from 'tap';
import { KernelError } from '../../common/errors';
import { E } from '../errno';
import { FakeIpvs } from '../testing/fake-ipvs';
import { FakeTransport } from '../testing/fake-transport';
import { parseAttrs } from '../rtnetlink/nlmsg';
import {
  decodeDest,
  decodeFamilyId,
  decodeService,
  encodeDelDest,
  encodeDelService,
  encodeGetDests,
  encodeGetFamily,
  encodeGetServices,
  encodeNewDest,
  encodeNewService,
  encodeSetDest,
  encodeSetService,
  type IpvsServiceKey,
} from './codec';
import { GETFAMILY_REPLY, GETFAMILY_SENT, GOLDEN_FAMILY_ID as ID, IPVSADM_SENT, IPVSADM_SENT_V6, KERNEL_DEST_DUMP, KERNEL_DEST_DUMP_V6, KERNEL_SCTP_DEST_DUMP, KERNEL_SCTP_SERVICE_DUMP, KERNEL_SERVICE_DUMP, KERNEL_SERVICE_DUMP_V6 } from './fixtures';
import { NetlinkIpvs, type IpvsEntry } from './ipvs';
import type { Change } from '../types';

const NLM_F_REQUEST_ACK = 0x5;
/** hex with seq/pid zeroed and REQUEST|ACK set (the transport sets them on the wire). */
function wire(b: Buffer): string {
  const c = Buffer.from(b);
  c.writeUInt16LE(c.readUInt16LE(6) | NLM_F_REQUEST_ACK, 6);
  c.fill(0, 8, 16);
  return c.toString('hex');
}
function golden(hex: string): string {
  const c = Buffer.from(hex, 'hex');
  c.fill(0, 8, 16);
  return c.toString('hex');
}
/** { nestType: { attrType: hex } } of a genetlink message (the two levels IPVS uses). */
function attrTree(hex: string): Record<number, Record<number, string>> {
  const b = Buffer.from(hex, 'hex');
  const out: Record<number, Record<number, string>> = {};
  for (const n of parseAttrs(b.subarray(20, b.readUInt32LE(0)))) {
    out[n.type] = {};
    for (const a of parseAttrs(n.data)) out[n.type]![a.type] = a.data.toString('hex');
  }
  return out;
}
/** Every attribute we send is in what ipvsadm sent, with the same bytes (ipvsadm sends more: the full service, tunnel fields). */
function assertSubset(t: Test, ours: Buffer, theirs: string, what: string): void {
  const o = attrTree(ours.toString('hex'));
  const g = attrTree(theirs);
  t.equal(wire(ours).slice(8, 16), golden(theirs).slice(8, 16), `${what}: family id and flags`);
  t.equal(ours.toString('hex').slice(32, 40), theirs.slice(32, 40), `${what}: genl cmd and version`);
  for (const [nest, attrs] of Object.entries(o)) {
    for (const [type, data] of Object.entries(attrs)) t.equal(data, g[Number(nest)]?.[Number(type)], `${what}: nest ${nest} attr ${type}`);
  }
}

const svc: IpvsServiceKey = { family: 4, protocol: 'tcp', address: '10.96.0.10', port: 80 };
const dest = { address: '10.244.1.2', port: 8080, weight: 1 };

t.test('golden bytes from ipvsadm under the Debian 6.1 kernel: services', async (t) => {
  t.equal(wire(encodeNewService(ID, { ...svc, scheduler: 'rr' })), golden(IPVSADM_SENT.newService), 'ipvsadm -A -t 10.96.0.10:80 -s rr');
  t.equal(wire(encodeSetService(ID, { ...svc, scheduler: 'wrr', persistent: true, timeout: 300 })), golden(IPVSADM_SENT.setServiceWrrPersistent), 'ipvsadm -E ... -s wrr -p 300');
  t.equal(wire(encodeNewService(ID, { family: 6, protocol: 'udp', address: 'fd00::a', port: 53, scheduler: 'rr' })), golden(IPVSADM_SENT.newServiceV6), 'ipvsadm -A -u [fd00::a]:53 -s rr (netmask = plen 128, host order)');
  // ipvsadm -D sends the whole service; the kernel needs only its key
  assertSubset(t, encodeDelService(ID, svc), IPVSADM_SENT.delService, 'ipvsadm -D');
  t.equal(wire(encodeGetServices(ID)), golden(IPVSADM_SENT.getServices), 'GET_SERVICE dump request');
  t.equal(wire(encodeGetDests(ID, svc)), golden(IPVSADM_SENT.getDests), 'GET_DEST dump request');
});

t.test('golden bytes from ipvsadm: destinations (our attributes are a subset, same bytes)', async (t) => {
  assertSubset(t, encodeNewDest(ID, svc, dest), IPVSADM_SENT.newDest, 'ipvsadm -a -m -w 1');
  assertSubset(t, encodeSetDest(ID, svc, { ...dest, weight: 0 }), IPVSADM_SENT.setDestWeight0, 'ipvsadm -e -m -w 0');
  assertSubset(t, encodeDelDest(ID, svc, dest), IPVSADM_SENT.delDest, 'ipvsadm -d');
  // ports are big endian: 8080 = 0x1f90, 80 = 0x0050
  t.match(encodeNewDest(ID, svc, dest).toString('hex'), /060002001f900000/);
  t.match(encodeNewDest(ID, svc, dest).toString('hex'), /0600040000500000/);
});

t.test('golden bytes from ipvsadm: IPv6 (AF_INET6 = 10) service and dest commands', async (t) => {
  const svc6: IpvsServiceKey = { family: 6, protocol: 'tcp', address: 'fd00:10:96::a', port: 80 };
  const dest6 = { address: 'fd00:10:244:1::2', port: 8080, weight: 1 };
  t.equal(wire(encodeNewService(ID, { ...svc6, scheduler: 'rr' })), golden(IPVSADM_SENT_V6.newService), 'ipvsadm -A -t [fd00:10:96::a]:80 -s rr: AF 10, 16-byte address, netmask = plen 128');
  t.equal(wire(encodeSetService(ID, { ...svc6, scheduler: 'wrr', persistent: true, timeout: 300 })), golden(IPVSADM_SENT_V6.setServiceWrrPersistent), 'ipvsadm -E ... -s wrr -p 300');
  assertSubset(t, encodeDelService(ID, svc6), IPVSADM_SENT_V6.delService, 'ipvsadm -D (v6)');
  assertSubset(t, encodeNewDest(ID, svc6, dest6), IPVSADM_SENT_V6.newDest, 'ipvsadm -a (v6) -m -w 1');
  assertSubset(t, encodeSetDest(ID, svc6, { ...dest6, weight: 0 }), IPVSADM_SENT_V6.setDestWeight0, 'ipvsadm -e (v6) -m -w 0');
  assertSubset(t, encodeDelDest(ID, svc6, dest6), IPVSADM_SENT_V6.delDest, 'ipvsadm -d (v6)');
  t.equal(wire(encodeGetDests(ID, svc6)), golden(IPVSADM_SENT_V6.getDests), 'GET_DEST dump request of an IPv6 service');
  // The attributes that make it IPv6, spelled out: SVC AF = 10 (u16), DEST ADDR_FAMILY = 10, the address in all 16 bytes.
  const tree = attrTree(encodeNewDest(ID, svc6, dest6).toString('hex'));
  t.equal(tree[1]![1], '0a00', 'IPVS_SVC_ATTR_AF = AF_INET6');
  t.equal(tree[1]![3], 'fd00001000960000000000000000000a', 'IPVS_SVC_ATTR_ADDR: 16 bytes');
  t.equal(tree[2]![11], '0a00', 'IPVS_DEST_ATTR_ADDR_FAMILY = AF_INET6');
  t.equal(tree[2]![1], 'fd000010024400010000000000000002', 'IPVS_DEST_ATTR_ADDR: 16 bytes');
  t.throws(() => encodeNewDest(ID, svc6, { ...dest6, address: '10.244.1.2' }), /dest\.address: 10\.244\.1\.2 is not an IPv6 address/, 'an IPv4 real server for an IPv6 service needs family 4 (tunnel)');
  t.throws(() => encodeNewService(ID, { ...svc6, address: '10.96.0.10', scheduler: 'rr' }), /not an IPv6 address/);
});

t.test('dump parsers on the kernel\'s own IPv6 answers', async (t) => {
  t.same(decodeService(Buffer.from(KERNEL_SERVICE_DUMP_V6[0]!, 'hex'), ID), {
    family: 6, protocol: 'tcp', address: 'fd00:10:96::a', port: 80, scheduler: 'wrr', persistent: true, flags: 0, timeout: 300, netmask: 128,
  });
  t.equal(decodeService(Buffer.from(KERNEL_SERVICE_DUMP_V6[1]!, 'hex'), ID), undefined, 'NLMSG_DONE');
  t.same(decodeDest(Buffer.from(KERNEL_DEST_DUMP_V6[0]!, 'hex'), ID, 6), {
    address: 'fd00:10:244:1::2', port: 8080, forward: 'masq', weight: 0, upperThreshold: 0, lowerThreshold: 0, activeConns: 0, inactiveConns: 0, persistConns: 0,
  }, 'ADDR_FAMILY 10 read (no `family` key: the same as the service\'s)');
  t.equal(decodeDest(Buffer.from(KERNEL_DEST_DUMP_V6[1]!, 'hex'), ID, 6), undefined, 'NLMSG_DONE');
  // Through the NetlinkIpvs handle: the dumps as a transport answers them.
  const ft = new FakeTransport();
  ft.onRequest = (m) => (m.readUInt16LE(4) === 0x10 ? [Buffer.from(GETFAMILY_REPLY, 'hex')] : m[16] === 4 ? KERNEL_SERVICE_DUMP_V6.map((h) => Buffer.from(h, 'hex')) : KERNEL_DEST_DUMP_V6.map((h) => Buffer.from(h, 'hex')));
  const k = new NetlinkIpvs(undefined, ft);
  const [s] = await k.listServices();
  t.match(s, { family: 6, address: 'fd00:10:96::a', port: 80 });
  t.match(await k.listDests(s!), [{ address: 'fd00:10:244:1::2', port: 8080, weight: 0 }]);
  t.equal(wire(ft.requests.at(-1)!), golden(IPVSADM_SENT_V6.getDests), 'the dest dump request as ipvsadm sent it');
  k.close();
});

t.test('CTRL_CMD_GETFAMILY', async (t) => {
  const c = Buffer.from(encodeGetFamily());
  t.equal(wire(c), golden(GETFAMILY_SENT));
  t.equal(decodeFamilyId(Buffer.from(GETFAMILY_REPLY, 'hex')), 0x20);
  t.equal(decodeFamilyId(Buffer.from(KERNEL_DEST_DUMP[1]!, 'hex')), undefined, 'NLMSG_DONE is no family');
});

t.test('golden bytes from ipvsadm under the Debian 6.1 kernel: SCTP (IPPROTO_SCTP = 132)', async (t) => {
  const sctp: IpvsServiceKey = { family: 4, protocol: 'sctp', address: '10.96.0.40', port: 900 };
  t.equal(wire(encodeNewService(ID, { ...sctp, scheduler: 'rr' })), golden(IPVSADM_SENT.newServiceSctp), 'ipvsadm -A --sctp-service 10.96.0.40:900 -s rr');
  assertSubset(t, encodeNewDest(ID, sctp, { address: '10.244.1.2', port: 9000, weight: 1 }), IPVSADM_SENT.newDestSctp, 'ipvsadm -a --sctp-service ... -r 10.244.1.2:9000 -m -w 1');
  t.same(decodeService(Buffer.from(KERNEL_SCTP_SERVICE_DUMP, 'hex'), ID), { ...sctp, scheduler: 'rr', persistent: false, flags: 0, timeout: 0, netmask: '255.255.255.255' }, 'the kernel dumps it back as sctp');
  t.match(decodeDest(Buffer.from(KERNEL_SCTP_DEST_DUMP, 'hex'), ID, 4), { address: '10.244.1.2', port: 9000, forward: 'masq', weight: 1 });
});

t.test('dump parsers on the kernel\'s own answers', async (t) => {
  t.same(decodeService(Buffer.from(KERNEL_SERVICE_DUMP[0]!, 'hex'), ID), {
    family: 4, protocol: 'tcp', address: '10.96.0.10', port: 80, scheduler: 'wrr', persistent: true, flags: 0, timeout: 300, netmask: '255.255.255.255',
  });
  t.equal(decodeService(Buffer.from(KERNEL_SERVICE_DUMP[1]!, 'hex'), ID), undefined, 'NLMSG_DONE');
  t.equal(decodeService(Buffer.from(KERNEL_SERVICE_DUMP[0]!, 'hex'), ID + 1), undefined, 'another family');
  t.same(decodeDest(Buffer.from(KERNEL_DEST_DUMP[0]!, 'hex'), ID, 4), {
    address: '10.244.1.2', port: 8080, forward: 'masq', weight: 0, upperThreshold: 0, lowerThreshold: 0, activeConns: 0, inactiveConns: 0, persistConns: 0,
  });
});

t.test('round trip through the parser (v6, fwmark, forwarding methods)', async (t) => {
  // turn a request into a dump answer: same attributes, cmd stays NEW_*
  const v6 = { family: 6 as const, protocol: 'udp' as const, address: 'fd00::a', port: 53, scheduler: 'sh', flags: 0x8, timeout: 0, persistent: false, netmask: 128 };
  t.same(decodeService(encodeNewService(ID, v6), ID), v6);
  const fw = { family: 4 as const, fwmark: 42, scheduler: 'rr', persistent: true, timeout: 60, flags: 0, netmask: '255.255.255.0' };
  t.same(decodeService(encodeNewService(ID, { ...fw, netmask: 24 }), ID), fw, 'prefix length 24 -> 255.255.255.0');
  for (const forward of ['masq', 'local', 'tunnel', 'route'] as const) {
    const d = decodeDest(encodeNewDest(ID, svc, { ...dest, forward, upperThreshold: 7, lowerThreshold: 3 }), ID, 4);
    t.match(d, { address: '10.244.1.2', port: 8080, forward, weight: 1, upperThreshold: 7, lowerThreshold: 3 });
  }
  const mixed = decodeDest(encodeNewDest(ID, { family: 6, protocol: 'tcp', address: '::1', port: 1 }, { address: '10.0.0.1', port: 1, weight: 1, family: 4, forward: 'tunnel' }), ID, 6);
  t.equal(mixed?.family, 4, 'an IPv4 real server of an IPv6 service keeps its own family');
});

t.test('encoder refuses bad input', async (t) => {
  t.throws(() => encodeNewService(ID, { ...svc, address: 'fd00::1', scheduler: 'rr' }), /not an IPv4/);
  t.throws(() => encodeNewService(ID, { ...svc, port: 70000, scheduler: 'rr' }), /0\.\.65535/);
  t.throws(() => encodeNewService(ID, { ...svc, scheduler: 'r r' }), /scheduler/);
  t.throws(() => encodeNewService(ID, { ...svc, protocol: 'icmp' as never, scheduler: 'rr' }), /protocol/);
  t.throws(() => encodeNewDest(ID, svc, { ...dest, weight: -1 }), /weight/);
  t.throws(() => encodeNewDest(ID, svc, { ...dest, forward: 'nat' as never }), /forward/);
  t.throws(() => encodeNewService(ID, { family: 6, protocol: 'tcp', address: '::1', port: 1, scheduler: 'rr', netmask: 129 }), /prefix length/);
});

t.test('NetlinkIpvs over a fake transport', async (t) => {
  const ft = new FakeTransport();
  ft.onRequest = (m) => {
    if (m.readUInt16LE(4) === 0x10) return [Buffer.from(GETFAMILY_REPLY, 'hex')];
    if (m[16] === 4) return KERNEL_SERVICE_DUMP.map((h) => Buffer.from(h, 'hex'));
    if (m[16] === 8) return KERNEL_DEST_DUMP.map((h) => Buffer.from(h, 'hex'));
    return E.EINVAL;
  };
  ft.onBatch = (_m, i) => (i === 1 ? -E.EEXIST : 0);
  const k = new NetlinkIpvs(undefined, ft);
  t.match(await k.listServices(), [{ address: '10.96.0.10', scheduler: 'wrr' }]);
  t.match(await k.listDests(svc), [{ address: '10.244.1.2', weight: 0 }]);
  const changes: Change<IpvsEntry>[] = [
    { op: 'add', entry: { kind: 'service', service: { ...svc, scheduler: 'rr' } } },
    { op: 'add', entry: { kind: 'dest', service: svc, dest } },
    { op: 'add', entry: { kind: 'dest', service: svc, dest: { ...dest, port: -1 } } },
    { op: 'replace', entry: { kind: 'dest', service: svc, dest: { ...dest, weight: 0 } } },
  ];
  const r = await k.apply(changes);
  t.equal(r.applied, 2);
  t.same(r.failed.map((f) => [f.index, f.errno]), [[1, E.EEXIST], [2, E.EINVAL]], 'per-change errors, in order; a refused change is not sent');
  t.match(r.failed[0]!.message, /add dest 10\.244\.1\.2:8080 of tcp 10\.96\.0\.10:80: EEXIST/);
  t.equal(ft.batches[0]!.length, 3, 'one batch of the three encodable changes');
  t.equal(ft.requests.filter((m) => m.readUInt16LE(4) === 0x10).length, 1, 'family resolved once');
  k.close();
  await t.rejects(k.listServices(), /closed/);
});

t.test('missing ip_vs: the error names the module and nftables mode', async (t) => {
  const ft = new FakeTransport();
  ft.onRequest = () => E.ENOENT;
  const k = new NetlinkIpvs(undefined, ft);
  const err = await k.listServices().catch((e: unknown) => e);
  t.ok(err instanceof KernelError);
  t.match((err as Error).message, /ip_vs/);
  t.match((err as Error).message, /modprobe ip_vs/);
  t.match((err as Error).message, /nftables mode/);
  t.equal((err as KernelError).errno, E.ENOENT);
});

t.test('FakeIpvs answers like the kernel', async (t) => {
  const f = new FakeIpvs();
  const r = await f.apply([
    { op: 'add', entry: { kind: 'service', service: { ...svc, scheduler: 'rr' } } },
    { op: 'add', entry: { kind: 'service', service: { ...svc, scheduler: 'rr' } } },
    { op: 'add', entry: { kind: 'dest', service: svc, dest } },
    { op: 'replace', entry: { kind: 'dest', service: svc, dest: { ...dest, weight: 0 } } },
    { op: 'delete', entry: { kind: 'dest', service: svc, dest: { ...dest, port: 1 } } },
    { op: 'add', entry: { kind: 'dest', service: { ...svc, port: 81 }, dest } },
  ]);
  t.same(r.failed.map((x) => [x.index, x.errno]), [[1, E.EEXIST], [4, E.ENOENT], [5, E.ESRCH]]);
  t.match(await f.listServices(), [{ ...svc, scheduler: 'rr', persistent: false, timeout: 0, netmask: '255.255.255.255' }]);
  t.match(await f.listDests(svc), [{ ...dest, weight: 0, forward: 'masq' }]);
  await f.apply([{ op: 'delete', entry: { kind: 'service', service: { ...svc, scheduler: 'rr' } } }]);
  t.same(await f.listServices(), []);
  t.same(await f.listDests(svc), [], 'no service: empty dump, like the kernel');
  f.unavailable = true;
  await t.rejects(f.listServices(), /modprobe ip_vs/);
});
