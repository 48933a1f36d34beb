/**
 * `kubernetes`: answers the cluster zone from the precomputed ClusterZone (which reads
 * only through the DnsController). Names outside the zone go to `next`. An ExternalName
 * whose target is outside the cluster zone is resolved through the rest of the chain
 * (stub domains, forward) and answered as CNAME + the target's records.
 */
import type { Handler, Next, Reply } from './handler';
import { isPromise } from './handler';
import { buildQuery, encodeName, HEADER_LEN, OPT_LEN, parseQuery, type Query, RCODE, readName, skipName, TYPE, writeOpt, isQuery } from './wire';
import type { ClusterZone } from './zone';

export class KubernetesHandler implements Handler {
  readonly name = 'kubernetes';
  constructor(
    private readonly zone: ClusterZone,
    private readonly ourSize: number,
  ) {}

  serve(q: Query, next: Next): Reply | Promise<Reply> {
    const r = this.zone.lookup(q, this.ourSize);
    if (r === null) return next(q);
    if (Buffer.isBuffer(r)) return r;
    return this.external(q, r.target, r.cnameRR, next);
  }

  private async external(q: Query, target: string, cnameRR: Buffer, next: Next): Promise<Reply> {
    let answers: Buffer[] = [];
    let rcode: number = RCODE.NOERROR;
    if (q.qtype !== TYPE.CNAME) {
      const msg = buildQuery(target, q.qtype, q.id, q.ednsSize > 0 ? { ednsSize: this.ourSize } : {});
      const tq = parseQuery(msg, q.transport, q.client);
      if (isQuery(tq)) {
        const rr = next(tq);
        const reply = isPromise(rr) ? await rr : rr;
        if (reply) {
          rcode = reply[3]! & 0x0f;
          answers = decompressAnswers(reply) ?? [];
          if (rcode === RCODE.NXDOMAIN) rcode = RCODE.NOERROR; // the CNAME exists; its target does not
        }
      }
    }
    const edns = q.ednsSize > 0;
    const head = Buffer.allocUnsafe(q.questionEnd);
    q.msg.copy(head, 0, 0, q.questionEnd);
    head[2] = 0x84 | q.rd;
    head[3] = 0x80 | rcode;
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(1 + answers.length, 6);
    head.writeUInt16BE(0, 8);
    head.writeUInt16BE(edns ? 1 : 0, 10);
    const opt = Buffer.allocUnsafe(edns ? OPT_LEN : 0);
    if (edns) writeOpt(opt, 0, this.ourSize, 0, q.dnssecOk);
    return Buffer.concat([head, cnameRR, ...answers, opt]);
  }
}

/** The answer section's RRs, each encoded on its own (names decompressed). */
export function decompressAnswers(msg: Buffer): Buffer[] | undefined {
  if (msg.length < HEADER_LEN) return undefined;
  let p = HEADER_LEN;
  for (let i = msg.readUInt16BE(4); i > 0; i--) {
    p = skipName(msg, p);
    if (p < 0) return undefined;
    p += 4;
  }
  const out: Buffer[] = [];
  for (let i = msg.readUInt16BE(6); i > 0; i--) {
    const owner = readName(msg, p);
    const ne = skipName(msg, p);
    if (owner === undefined || ne < 0 || ne + 10 > msg.length) return undefined;
    const type = msg.readUInt16BE(ne);
    const rdlen = msg.readUInt16BE(ne + 8);
    const rd = ne + 10;
    if (rd + rdlen > msg.length) return undefined;
    let data: Buffer;
    const nameAt = (off: number): Buffer | undefined => {
      const n = readName(msg, off);
      return n === undefined ? undefined : encodeName(n);
    };
    if (type === TYPE.CNAME || type === TYPE.NS || type === TYPE.PTR) {
      const n = nameAt(rd);
      if (!n) return undefined;
      data = n;
    } else if (type === 15 /* MX */ || type === TYPE.SRV) {
      const fixed = type === TYPE.SRV ? 6 : 2;
      const n = nameAt(rd + fixed);
      if (!n) return undefined;
      data = Buffer.concat([msg.subarray(rd, rd + fixed), n]);
    } else data = Buffer.from(msg.subarray(rd, rd + rdlen));
    const o = encodeName(owner);
    const rr = Buffer.allocUnsafe(o.length + 10 + data.length);
    o.copy(rr, 0);
    msg.copy(rr, o.length, ne, ne + 8);
    rr.writeUInt16BE(data.length, o.length + 8);
    data.copy(rr, o.length + 10);
    out.push(rr);
    p = rd + rdlen;
  }
  return out;
}
