/**
 * A tiny authoritative DNS server for tests (UDP + TCP), run inside a lab namespace:
 *   node auth-server.js '{"listen":"198.18.0.2:53","zone":"acme.local","records":{"www.acme.local":{"A":["192.0.2.1"]}}}'
 * Names under the zone without records get NXDOMAIN with the SOA (MINIMUM `negTtl`, default 30);
 * `big.<zone>` answers 80 A records (truncated over UDP without EDNS). Prints `AUTH READY`.
 * Each answer is logged as `Q <name> <type> <udp|tcp>` on stdout.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { encodeResponse, fitUdp, isQuery, keyToName, parseQuery, type Query, RCODE, rdata, type RR, TYPE } from '../../src/dns/wire';

interface Args {
  listen: string;
  zone: string;
  records: Record<string, Record<string, string[]>>;
  ttl?: number;
  negTtl?: number;
  /** Answer A queries for any other name under the zone with this address. */
  wildcard?: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const [host, portText] = [args.listen.slice(0, args.listen.lastIndexOf(':')), args.listen.slice(args.listen.lastIndexOf(':') + 1)];
const port = Number(portText);
const ttl = args.ttl ?? 60;
const zone = args.zone.toLowerCase();
const soa: RR = { name: zone, type: TYPE.SOA, ttl, data: rdata.soa(`ns.${zone}`, `hostmaster.${zone}`, 1, 3600, 600, 86400, args.negTtl ?? 30) };

function answer(q: Query): Buffer {
  const name = keyToName(q.key);
  const wire = q.msg.subarray(12, 12 + q.nameLen);
  const inZone = name === zone || name.endsWith(`.${zone}`) || zone === '';
  if (!inZone) return encodeResponse(wire, q.qtype, RCODE.REFUSED, [], [], [], false);
  let answers: RR[] = [];
  if (name === `big.${zone}` && q.qtype === TYPE.A) {
    answers = Array.from({ length: 80 }, (_, i) => ({ name: null, type: TYPE.A, ttl, data: rdata.a(`192.0.2.${i + 1}`) }));
  } else if (name === zone && (q.qtype === TYPE.SOA || q.qtype === TYPE.NS)) {
    answers = q.qtype === TYPE.SOA ? [{ ...soa, name: null }] : [{ name: null, type: TYPE.NS, ttl, data: rdata.name(`ns.${zone}`) }];
  } else {
    const rec = args.records[name] ?? (args.wildcard && name !== zone ? { A: [args.wildcard] } : undefined);
    if (!rec && name !== zone && name !== `big.${zone}`) return encodeResponse(wire, q.qtype, RCODE.NXDOMAIN, [], [soa], []);
    for (const v of rec?.A && q.qtype === TYPE.A ? rec.A : []) answers.push({ name: null, type: TYPE.A, ttl, data: rdata.a(v) });
    for (const v of rec?.AAAA && q.qtype === TYPE.AAAA ? rec.AAAA : []) answers.push({ name: null, type: TYPE.AAAA, ttl, data: rdata.a(v) });
    for (const v of rec?.TXT && q.qtype === TYPE.TXT ? rec.TXT : []) answers.push({ name: null, type: TYPE.TXT, ttl, data: rdata.txt(v) });
    if (answers.length === 0) return encodeResponse(wire, q.qtype, RCODE.NOERROR, [], [soa], []);
  }
  return encodeResponse(wire, q.qtype, RCODE.NOERROR, answers, [], []);
}

function respond(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
  const q = parseQuery(msg, transport, '');
  if (!isQuery(q)) return undefined;
  process.stdout.write(`Q ${keyToName(q.key)} ${q.qtype} ${transport}\n`);
  const r = answer(q);
  r.writeUInt16BE(q.id, 0);
  r[2] = r[2]! | q.rd;
  return transport === 'udp' ? fitUdp(q, r, q.ednsSize > 0 ? q.ednsSize : 512, 1232) : r;
}

const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
udp.on('message', (m, r) => {
  const out = respond(m, 'udp');
  if (out) udp.send(out, r.port, r.address);
});
udp.bind(port, host, () => {
  const tcp = net.createServer((c) => {
    let buf: Buffer = Buffer.alloc(0);
    c.on('error', () => undefined);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        const out = respond(Buffer.from(m), 'tcp');
        if (!out) continue;
        const f = Buffer.alloc(2);
        f.writeUInt16BE(out.length);
        c.write(Buffer.concat([f, out]));
      }
    });
  });
  tcp.listen(port, host, () => process.stdout.write('AUTH READY\n'));
});
process.on('SIGTERM', () => process.exit(0));
