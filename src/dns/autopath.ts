/**
 * `autopath`: the search-path shortcut (CoreDNS's autopath plugin, done so it cannot give
 * a pod another pod's answer).
 *
 * A pod's resolv.conf has `search <ns>.svc.<zone> svc.<zone> <zone> <node's search…>` and
 * `ndots:5`, so `example.com` is first asked as `example.com.<ns>.svc.<zone>`. Knowing the
 * pod, the server walks the rest of the search list itself and answers that first query
 * with `CNAME <the first name that exists>` plus that name's records, the way CoreDNS does.
 *
 * Where CoreDNS goes wrong (coredns #2842, #3765, #7179) and what this does instead:
 * - The pod is found from the source IP in this node's *current* Pod index only: exactly
 *   one running, non-hostNetwork Pod on this node must have that IP. No pod, several (an IP
 *   being reused), a pod of another node, or a query whose namespace is not that pod's:
 *   the plain answer (NXDOMAIN for the first search name), and the client walks its list.
 * - The walk stops at the first name that *exists* (NOERROR, with or without data of the
 *   asked type), never at the first with data, so A and AAAA stop at the same name and can
 *   never point at different targets. Any SERVFAIL, timeout or drop on the way: the plain
 *   answer.
 * - Its answer is never cached under the query name (the cache bypasses cluster-zone
 *   names), so one pod's search result never reaches another pod. The forwarded
 *   candidates go through the cache as ordinary queries.
 */
import type { PodObject } from '../k8s/types';
import type { Handler, Next, Reply } from './handler';
import { isPromise } from './handler';
import { decompressAnswers } from './kubernetes';
import { buildQuery, encodeRR, HEADER_LEN, isQuery, keyToName, OPT_LEN, parseQuery, type Query, RCODE, rdata, TYPE, writeOpt } from './wire';

export interface AutopathOptions {
  /** Cluster zones (the first is kubelet's clusterDomain). */
  zones: readonly string[];
  /** This node's name: only its pods are trusted. */
  nodeName: string;
  /** Pods with this IP, from the current index. */
  podsByIP: (ip: string) => readonly PodObject[];
  /** The node's own search domains (kubelet appends them to the pods' list). */
  hostSearch: () => readonly string[];
  ttl: number;
  ourSize: number;
}

/** Where the plain answer is the right one; exported for tests. */
export type AutopathDecision = { kind: 'plain'; reason: string } | { kind: 'walk'; base: string; search: string[] };

export class AutopathHandler implements Handler {
  readonly name = 'autopath';
  constructor(private readonly o: AutopathOptions) {}

  /** The pod behind `client`, or why there is none we can trust. */
  podOf(client: string): PodObject | string {
    const pods = this.o.podsByIP(client).filter((p) => !p.hostNetwork && p.phase !== 'Succeeded' && p.phase !== 'Failed');
    if (pods.length === 0) return 'no pod with that IP';
    if (pods.length > 1) return 'IP held by several pods';
    const p = pods[0]!;
    if (p.nodeName !== this.o.nodeName) return 'pod not on this node';
    return p;
  }

  decide(q: Query): AutopathDecision {
    if (q.qtype !== TYPE.A && q.qtype !== TYPE.AAAA) return { kind: 'plain', reason: 'type' };
    const name = keyToName(q.key);
    const zone = this.o.zones.find((z) => name.endsWith(`.svc.${z}`));
    if (!zone) return { kind: 'plain', reason: 'not a search name' };
    const pod = this.podOf(q.client);
    if (typeof pod === 'string') return { kind: 'plain', reason: pod };
    const first = `.${pod.meta.namespace}.svc.${zone}`;
    if (!name.endsWith(first) || name.length === first.length) return { kind: 'plain', reason: "not the pod's first search domain" };
    const base = name.slice(0, name.length - first.length);
    const search = [`svc.${zone}`, zone, ...this.o.hostSearch()].map((d) => `${base}.${d}`);
    search.push(base);
    return { kind: 'walk', base, search };
  }

  serve(q: Query, next: Next): Reply | Promise<Reply> {
    // The first search name itself: answered plainly when it exists (or cannot be decided).
    const own = next(q);
    if (isPromise(own) || own === null || (own[3]! & 0x0f) !== RCODE.NXDOMAIN) return own;
    const d = this.decide(q);
    if (d.kind === 'plain') return own;
    return this.walk(q, own, d.search, next);
  }

  private async walk(q: Query, plain: Buffer, names: string[], next: Next): Promise<Reply> {
    for (const name of names) {
      let sub: Query;
      try {
        const pq = parseQuery(buildQuery(name, q.qtype, q.id, q.ednsSize > 0 ? { ednsSize: this.o.ourSize } : {}), q.transport, q.client);
        if (!isQuery(pq)) return plain;
        sub = pq;
      } catch {
        continue; // a candidate longer than 255 bytes does not exist
      }
      const rr = next(sub);
      const reply = isPromise(rr) ? await rr.catch(() => null) : rr;
      if (!reply || reply.length < HEADER_LEN || !(reply[2]! & 0x80)) return plain;
      const rcode = reply[3]! & 0x0f;
      if (rcode === RCODE.NXDOMAIN) continue;
      if (rcode !== RCODE.NOERROR) return plain;
      const answers = decompressAnswers(reply);
      return answers ? this.cnameTo(q, name, answers) : plain;
    }
    return plain;
  }

  /** NOERROR: `qname CNAME target` and the target's answer records. */
  private cnameTo(q: Query, target: string, answers: Buffer[]): Buffer {
    const cname = encodeRR({ name: null, type: TYPE.CNAME, ttl: this.o.ttl, data: rdata.name(target) });
    const edns = q.ednsSize > 0;
    const head = Buffer.allocUnsafe(q.questionEnd);
    q.msg.copy(head, 0, 0, q.questionEnd);
    head[2] = 0x84 | q.rd;
    head[3] = 0x80;
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(1 + answers.length, 6);
    head.writeUInt16BE(0, 8);
    head.writeUInt16BE(edns ? 1 : 0, 10);
    const opt = Buffer.allocUnsafe(edns ? OPT_LEN : 0);
    if (edns) writeOpt(opt, 0, this.o.ourSize, 0, q.dnssecOk);
    return Buffer.concat([head, cname, ...answers, opt]);
  }
}
