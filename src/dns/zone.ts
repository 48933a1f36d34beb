/**
 * The cluster zone, precomputed as wire bytes (Kubernetes DNS-Based Service Discovery
 * 1.1.0). When the state changes, every (name, type) answer of the changed Services is
 * encoded once into one shared slab; a query costs a Map lookup, one copy and a few
 * patched bytes (ID, RD, the question's case, EDNS).
 *
 * Updates are per Service: a changed Service's old answers become garbage in the slab
 * and its new ones are appended; the slab is compacted when more than half of it is garbage.
 */
import { endpointAddresses, type EndpointSliceObject, type PodObject, type ServiceObject } from '../k8s/types';
import type { DnsController } from './controller';
import {
  dashedIp,
  encodeName,
  encodeResponse,
  encodeRR,
  HEADER_LEN,
  ipBytes,
  isSubdomainKey,
  keyToName,
  nameKey,
  OPT_LEN,
  type Query,
  RCODE,
  rdata,
  reverseName,
  type RR,
  skipName,
  TYPE,
  undashIp,
  writeOpt,
} from './wire';
import { isIPv4 } from 'node:net';
import { buildSnapshot, negativeAnswer, patchTemplate, type ZoneSnapshot } from './zone-index';

export type PodRecordsMode = 'insecure' | 'verified' | 'disabled';

export interface ZoneOptions {
  /** Cluster domains, e.g. ['cluster.local']; the first one is used for PTR targets. */
  zones: string[];
  ttl: number;
  podRecords: PodRecordsMode;
}

/** A growable byte slab with handles; templates never get a Buffer of their own. */
/** Slab memory is a SharedArrayBuffer, so worker threads read the same templates (zone-index.ts). */
function sharedBuffer(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

class Slab {
  buf = sharedBuffer(64 * 1024);
  used = 0;
  garbage = 0;
  off = new Int32Array(1024);
  len = new Int32Array(1024);
  private free: number[] = [];
  private next = 0;

  alloc(bytes: Buffer): number {
    if (this.used + bytes.length > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.used + bytes.length) size *= 2;
      const nb = sharedBuffer(size);
      this.buf.copy(nb, 0, 0, this.used);
      this.buf = nb;
    }
    bytes.copy(this.buf, this.used);
    let h = this.free.pop();
    if (h === undefined) {
      h = this.next++;
      if (h >= this.off.length) {
        const o = new Int32Array(this.off.length * 2);
        o.set(this.off);
        this.off = o;
        const l = new Int32Array(this.len.length * 2);
        l.set(this.len);
        this.len = l;
      }
    }
    this.off[h] = this.used;
    this.len[h] = bytes.length;
    this.used += bytes.length;
    return h;
  }

  release(h: number): void {
    this.garbage += this.len[h]!;
    this.len[h] = -1;
    this.free.push(h);
  }

  /** Copy live templates into a fresh buffer when most of the slab is garbage. */
  maybeCompact(): void {
    if (this.garbage < 256 * 1024 || this.garbage * 2 < this.used) return;
    const live = this.used - this.garbage;
    const nb = sharedBuffer(Math.max(64 * 1024, Math.ceil(live * 1.25)));
    let p = 0;
    for (let h = 0; h < this.next; h++) {
      const l = this.len[h]!;
      if (l < 0) continue;
      this.buf.copy(nb, p, this.off[h]!, this.off[h]! + l);
      this.off[h] = p;
      p += l;
    }
    this.buf = nb;
    this.used = p;
    this.garbage = 0;
  }

  /** Give back the doubling headroom after a (re)build: keep 1/8 spare for updates. */
  trim(): void {
    const want = Math.max(64 * 1024, this.used + (this.used >> 3));
    if (this.buf.length <= want + (want >> 2)) return;
    const nb = sharedBuffer(want);
    this.buf.copy(nb, 0, 0, this.used);
    this.buf = nb;
  }

  view(h: number): Buffer {
    return this.buf.subarray(this.off[h]!, this.off[h]! + this.len[h]!);
  }
}

/** The shared empty `types`/`refs` of names without records (never pushed to). */
const NO_NUMBERS: number[] = [];

interface NameEntry {
  /** qtypes with an answer, parallel to `refs` (slab handles); exact length, never grown. */
  types: number[];
  refs: number[];
  /** Service key that owns the name ('' for zone-level names). */
  owner: string;
  /** ExternalName target (dotted, lower case). */
  cname: string | undefined;
  /** Index of the cluster zone the name is in; -1 for reverse (PTR) names. */
  zone: number;
}

/** What one lookup produced: the response, an ExternalName to resolve outside, or null (not ours). */
export interface ExternalTarget {
  target: string;
  cnameRR: Buffer;
}
export type ZoneResult = Buffer | ExternalTarget | null;

interface NameRecords {
  answers: Map<number, RR[]>;
  additional: Map<number, RR[]>;
  cname?: string;
}

export class ClusterZone {
  private readonly slab = new Slab();
  private readonly names = new Map<string, NameEntry>();
  /** Service key → the name keys it owns. */
  private readonly owned = new Map<string, string[]>();
  /** `ns.svc.zone` keys of known namespaces. */
  private nsKeys = new Set<string>();
  /** `ns/subdomain` → pods with that subdomain (hostname records of headless Services). */
  private readonly subdomainPods = new Map<string, Map<string, PodObject>>();
  private readonly zoneKeys: string[];
  private readonly podZoneKeys: string[];
  private soaRR: Buffer[] = [];
  private built = false;
  private serial = 0;

  constructor(
    private readonly controller: DnsController,
    readonly options: ZoneOptions,
  ) {
    this.zoneKeys = options.zones.map(nameKey);
    this.podZoneKeys = options.zones.map((z) => nameKey(`pod.${z}`));
  }

  get ready(): boolean {
    return this.built;
  }

  /** Bytes of templates in the slab (live + garbage) and the number of names. */
  stats(): { names: number; slabBytes: number; garbageBytes: number } {
    return { names: this.names.size, slabBytes: this.slab.used, garbageBytes: this.slab.garbage };
  }

  // ---- building ---------------------------------------------------------------

  /** Record a Pod change for the subdomain index; returns the Service key it affects, if any. */
  trackPod(previous: PodObject | undefined, current: PodObject | undefined): string[] {
    const out: string[] = [];
    for (const p of [previous, current]) {
      if (!p?.subdomain || !p.hostname) continue;
      const k = `${p.meta.namespace}/${p.subdomain}`;
      out.push(k);
      let m = this.subdomainPods.get(k);
      if (p === current) {
        if (!m) this.subdomainPods.set(k, (m = new Map()));
        m.set(p.meta.key, p);
      } else if (m) {
        m.delete(p.meta.key);
        if (m.size === 0) this.subdomainPods.delete(k);
      }
    }
    return out;
  }

  /** Rebuild everything from the controller. */
  rebuild(): void {
    this.subdomainPods.clear();
    for (const p of this.controller.pods()) this.trackPod(undefined, p);
    for (const key of [...this.owned.keys()]) this.removeService(key);
    this.names.clear();
    this.buildZoneNames();
    for (const svc of this.controller.services()) this.addService(svc);
    this.finish();
  }

  /** Rebuild the answers of these Services (`namespace/name`), present or gone. */
  update(serviceKeys: Iterable<string>): void {
    if (!this.built) return this.rebuild();
    for (const key of serviceKeys) {
      this.removeService(key);
      const svc = this.controller.service(key);
      if (svc) this.addService(svc);
    }
    this.buildZoneNames();
    this.finish();
  }

  private finish(): void {
    const ns = new Set<string>();
    for (const n of this.controller.namespaces()) ns.add(n);
    for (const key of this.owned.keys()) ns.add(key.slice(0, key.indexOf('/')));
    this.nsKeys = new Set();
    for (const n of ns) for (const z of this.options.zones) this.nsKeys.add(nameKey(`${n}.svc.${z}`));
    this.slab.maybeCompact();
    this.slab.trim();
    this.built = true;
  }

  private buildZoneNames(): void {
    const ttl = this.options.ttl;
    this.serial = (this.serial + 1) >>> 0 || 1;
    this.soaRR = [];
    for (const z of this.options.zones) {
      const soa: RR = { name: z, type: TYPE.SOA, ttl, data: rdata.soa(`ns.dns.${z}`, `hostmaster.${z}`, Math.floor(Date.now() / 1000) + this.serial, 7200, 1800, 86400, ttl) };
      this.soaRR.push(encodeRR(soa));
      const apex: NameRecords = { answers: new Map(), additional: new Map() };
      apex.answers.set(TYPE.SOA, [{ ...soa, name: null }]);
      apex.answers.set(TYPE.NS, [{ name: null, type: TYPE.NS, ttl, data: rdata.name(`ns.dns.${z}`) }]);
      this.setName(z, apex, '');
      const version: NameRecords = { answers: new Map([[TYPE.TXT, [{ name: null, type: TYPE.TXT, ttl, data: rdata.txt('1.1.0') }]]]), additional: new Map() };
      this.setName(`dns-version.${z}`, version, '');
      this.setName(`svc.${z}`, { answers: new Map(), additional: new Map() }, '');
      this.setName(`pod.${z}`, { answers: new Map(), additional: new Map() }, '');
    }
  }

  private removeService(key: string): void {
    const keys = this.owned.get(key);
    if (!keys) return;
    for (const k of keys) {
      const e = this.names.get(k);
      if (!e || e.owner !== key) continue;
      for (const r of e.refs) this.slab.release(r);
      this.names.delete(k);
    }
    this.owned.delete(key);
  }

  private setName(name: string, rec: NameRecords, owner: string): string {
    const key = nameKey(name);
    const old = this.names.get(key);
    if (old) for (const r of old.refs) this.slab.release(r);
    const wire = encodeName(name.toLowerCase());
    const types: number[] = [];
    const refs: number[] = [];
    for (const [type, answers] of rec.answers) {
      if (answers.length === 0) continue;
      types.push(type);
      refs.push(this.slab.alloc(encodeResponse(wire, type, RCODE.NOERROR, answers, [], rec.additional.get(type) ?? [])));
    }
    // Exact-length copies: a pushed-to array keeps a 17-slot backing store (~150 bytes),
    // and a zone holds four names per Service (measured: 5 MB at 5,000 Services).
    const entry: NameEntry = { types: types.length ? types.slice() : NO_NUMBERS, refs: refs.length ? refs.slice() : NO_NUMBERS, owner, cname: rec.cname, zone: this.zoneOf(key) };
    this.names.set(key, entry);
    return key;
  }

  private addService(svc: ServiceObject): void {
    const recs = new Map<string, NameRecords>();
    const get = (name: string): NameRecords => {
      let r = recs.get(name);
      if (!r) recs.set(name, (r = { answers: new Map(), additional: new Map() }));
      return r;
    };
    const add = (name: string, type: number, rr: RR, map: 'answers' | 'additional' = 'answers'): void => {
      const r = get(name)[map];
      let l = r.get(type);
      if (!l) r.set(type, (l = []));
      l.push(rr);
    };
    const ttl = this.options.ttl;
    const ns = svc.meta.namespace ?? 'default';
    const key = svc.meta.key;
    const addrRR = (name: string | null, ip: string): RR => ({ name, type: isIPv4(ip) ? TYPE.A : TYPE.AAAA, ttl, data: ipBytes(ip)! });
    const headless = svc.clusterIPs.length === 0 || svc.clusterIPs[0] === 'None';
    for (const [zi, zone] of this.options.zones.entries()) {
      const base = `${svc.meta.name}.${ns}.svc.${zone}`;
      get(base);
      if (svc.type === 'ExternalName') {
        if (svc.externalName) get(base).cname = svc.externalName.toLowerCase().replace(/\.$/, '');
        continue;
      }
      if (!headless) {
        const ips = svc.clusterIPs.filter((ip) => ipBytes(ip));
        for (const ip of ips) {
          const rr = addrRR(null, ip);
          add(base, rr.type, rr);
          if (zi === 0) {
            const rev = reverseName(ip);
            if (rev) add(rev, TYPE.PTR, { name: null, type: TYPE.PTR, ttl, data: rdata.name(base) });
          }
        }
        const named = svc.ports.filter((p) => p.name);
        for (const p of named) {
          const srvName = `_${p.name.toLowerCase()}._${p.protocol.toLowerCase()}.${base}`;
          const srv: RR = { name: null, type: TYPE.SRV, ttl, data: rdata.srv(0, 100, p.port, base) };
          add(srvName, TYPE.SRV, srv);
          add(base, TYPE.SRV, { ...srv, data: rdata.srv(0, Math.floor(100 / named.length), p.port, base) });
          get(`_${p.protocol.toLowerCase()}.${base}`);
          for (const ip of ips) {
            add(srvName, TYPE.SRV, addrRR(base, ip), 'additional');
          }
        }
        if (named.length > 0) for (const ip of ips) add(base, TYPE.SRV, addrRR(base, ip), 'additional');
        continue;
      }
      // Headless: one record per ready endpoint, names per endpoint, SRV per endpoint × port.
      const seen = new Set<string>();
      const endpoints: { name: string; ip: string; hostname: boolean }[] = [];
      const ports = new Map<string, { name: string; port: number; protocol: string }>();
      for (const slice of this.controller.endpointSlices(key) as EndpointSliceObject[]) {
        if (slice.addressType === 'FQDN') continue;
        for (const p of slice.ports) if (p.name) ports.set(`${p.name}/${p.protocol}/${p.port}`, { name: p.name, port: p.port, protocol: p.protocol });
        for (const ep of slice.endpoints) {
          if (!ep.conditions.ready && !svc.publishNotReadyAddresses) continue;
          for (const ip of endpointAddresses(ep)) {
            if (!ipBytes(ip) || seen.has(ip)) continue;
            seen.add(ip);
            endpoints.push({ name: (ep.hostname ?? dashedIp(ip)).toLowerCase(), ip, hostname: ep.hostname !== undefined });
          }
        }
      }
      // A Pod's hostname + subdomain naming this headless Service.
      for (const pod of this.subdomainPods.get(key)?.values() ?? []) {
        if (pod.phase === 'Succeeded' || pod.phase === 'Failed') continue;
        for (const ip of pod.podIPs) {
          const name = pod.hostname!.toLowerCase();
          if (endpoints.some((e) => e.name === name && e.ip === ip)) continue;
          endpoints.push({ name, ip, hostname: true });
          seen.add(ip);
        }
      }
      for (const ep of endpoints) {
        const epName = `${ep.name}.${base}`;
        const rr = addrRR(null, ep.ip);
        if (!recs.get(base)?.answers.get(rr.type)?.some((x) => x.data.equals(rr.data))) add(base, rr.type, rr);
        add(epName, rr.type, rr);
        if (ep.hostname && zi === 0) {
          const rev = reverseName(ep.ip);
          if (rev) add(rev, TYPE.PTR, { name: null, type: TYPE.PTR, ttl, data: rdata.name(epName) });
        }
      }
      const portList = [...ports.values()];
      const epNames = [...new Set(endpoints.map((e) => e.name))];
      for (const p of portList) {
        const srvName = `_${p.name.toLowerCase()}._${p.protocol.toLowerCase()}.${base}`;
        get(`_${p.protocol.toLowerCase()}.${base}`);
        const weight = Math.max(1, Math.floor(100 / Math.max(1, epNames.length)));
        for (const n of epNames) {
          const target = `${n}.${base}`;
          add(srvName, TYPE.SRV, { name: null, type: TYPE.SRV, ttl, data: rdata.srv(0, weight, p.port, target) });
          add(base, TYPE.SRV, { name: null, type: TYPE.SRV, ttl, data: rdata.srv(0, Math.max(1, Math.floor(weight / portList.length)), p.port, target) });
          for (const e of endpoints) if (e.name === n) {
            add(srvName, TYPE.SRV, addrRR(target, e.ip), 'additional');
            add(base, TYPE.SRV, addrRR(target, e.ip), 'additional');
          }
        }
      }
    }
    const keys: string[] = [];
    for (const [name, rec] of recs) {
      const k = nameKey(name);
      const prev = this.names.get(k);
      // A name another Service owns (a shared headless endpoint PTR) stays with its first owner.
      if (prev && prev.owner !== key && prev.owner !== '' && this.controller.service(prev.owner)) continue;
      keys.push(this.setName(name, rec, key));
    }
    this.owned.set(key, keys.slice()); // exact length (see setName)
  }

  // ---- answering --------------------------------------------------------------

  /** Index of the zone `key` is in (cluster zones only), or -1. */
  zoneOf(key: string): number {
    for (let i = 0; i < this.zoneKeys.length; i++) if (isSubdomainKey(key, this.zoneKeys[i]!)) return i;
    return -1;
  }

  /**
   * Answer `q` from the zone. `notzone` when the name is not ours (a reverse name we have
   * no PTR for falls through to the next handler, as CoreDNS's `fallthrough in-addr.arpa`).
   */
  lookup(q: Query, ourSize: number): ZoneResult {
    if (q.zi === -2) this.resolve(q);
    const zi = q.zi;
    const entry = q.entry as NameEntry | undefined;
    if (zi < 0) {
      if (entry) {
        const h = this.refFor(entry, q.qtype);
        if (h >= 0) return this.fromTemplate(h, q, ourSize);
      }
      return null;
    }
    if (!this.built) return this.negative(q, zi, RCODE.SERVFAIL, false, ourSize);
    if (entry) {
      const h = this.refFor(entry, q.qtype);
      if (h >= 0 && entry.cname === undefined) return this.fromTemplate(h, q, ourSize);
      if (entry.cname !== undefined && q.qtype !== TYPE.CNAME) return this.chase(q, entry.cname, ourSize);
      if (entry.cname !== undefined) return this.withCname(q, entry.cname, undefined, ourSize);
      return this.negative(q, zi, RCODE.NOERROR, true, ourSize);
    }
    if (this.nsKeys.has(q.key)) return this.negative(q, zi, RCODE.NOERROR, true, ourSize);
    const pod = this.podAnswer(q, zi, ourSize);
    if (pod) return pod;
    return this.negative(q, zi, RCODE.NXDOMAIN, true, ourSize);
  }

  /** Look the query's name up once: its entry and its zone (kept on the query for the next handler). */
  private resolve(q: Query): void {
    const e = this.names.get(q.key);
    q.entry = e;
    q.zi = e ? e.zone : this.zoneOf(q.key);
  }

  private refFor(entry: NameEntry, qtype: number): number {
    const t = entry.types;
    for (let i = 0; i < t.length; i++) if (t[i] === qtype) return entry.refs[i]!;
    if (qtype === TYPE.ANY && entry.refs.length > 0) return entry.refs[0]!; // RFC 8482: a subset
    return -1;
  }

  private fromTemplate(h: number, q: Query, ourSize: number): Buffer {
    const slab = this.slab;
    return patchTemplate(slab.buf, slab.off[h]!, slab.len[h]!, q, ourSize);
  }

  private negative(q: Query, zi: number, rcode: number, withSoa: boolean, ourSize: number): Buffer {
    return negativeAnswer(q, this.soaRR[zi], rcode, withSoa, ourSize);
  }

  /**
   * The zone as flat shared memory for worker threads (zone-index.ts): the slab itself (shared,
   * append-only between compactions, so a snapshot's offsets stay valid) and a hash index.
   */
  snapshot(generation: number): ZoneSnapshot {
    return buildSnapshot({
      generation,
      built: this.built,
      slab: this.slab.buf,
      names: this.names,
      nsKeys: this.nsKeys,
      zoneKeys: this.zoneKeys,
      podZoneKeys: this.options.podRecords === 'disabled' ? [] : this.podZoneKeys,
      soa: this.soaRR,
      place: (h) => [this.slab.off[h]!, this.slab.len[h]!],
    });
  }

  private podAnswer(q: Query, zi: number, ourSize: number): Buffer | undefined {
    const mode = this.options.podRecords;
    if (mode === 'disabled' || !isSubdomainKey(q.key, this.podZoneKeys[zi]!)) return undefined;
    const labels = keyToName(q.key).split('.');
    const depth = labels.length - this.options.zones[zi]!.split('.').length - 1;
    if (depth !== 2) return undefined;
    const [ipLabel, ns] = labels as [string, string];
    const ip = undashIp(ipLabel);
    if (!ip) return undefined;
    if (mode === 'verified' && !this.controller.podsByIP(ip).some((p) => p.meta.namespace === ns)) return undefined;
    const type = isIPv4(ip) ? TYPE.A : TYPE.AAAA;
    if (q.qtype !== type) return this.negative(q, zi, RCODE.NOERROR, true, ourSize);
    const tpl = encodeResponse(encodeName(keyToName(q.key)), type, RCODE.NOERROR, [{ name: null, type, ttl: this.options.ttl, data: ipBytes(ip)! }], [], []);
    const h = this.slab.alloc(tpl);
    const out = this.fromTemplate(h, q, ourSize);
    this.slab.release(h);
    return out;
  }

  /** ExternalName: a CNAME, chased inside the cluster zone, else handed to the forwarder. */
  private chase(q: Query, target: string, ourSize: number): ZoneResult {
    const tkey = nameKey(target);
    if (this.zoneOf(tkey) < 0) return { target, cnameRR: encodeRR({ name: null, type: TYPE.CNAME, ttl: this.options.ttl, data: rdata.name(target) }) };
    const te = this.names.get(tkey);
    const h = te && te.cname === undefined ? this.refFor(te, q.qtype) : -1;
    return this.withCname(q, target, h >= 0 ? this.slab.view(h) : undefined, ourSize);
  }

  /** CNAME to `target` plus the target's answer section from its template (owners re-pointed at the CNAME's rdata). */
  private withCname(q: Query, target: string, targetTpl: Buffer | undefined, ourSize: number): Buffer {
    const cname = encodeRR({ name: null, type: TYPE.CNAME, ttl: this.options.ttl, data: rdata.name(target) });
    const parts: Buffer[] = [cname];
    let count = 1;
    const targetOffset = q.questionEnd + 12; // the CNAME's rdata: after C00C + 10 bytes of RR header
    if (targetTpl) {
      let p = skipName(targetTpl, HEADER_LEN) + 4;
      const an = targetTpl.readUInt16BE(6);
      for (let i = 0; i < an; i++) {
        const ne = skipName(targetTpl, p);
        const end = ne + 10 + targetTpl.readUInt16BE(ne + 8);
        const rr = Buffer.from(targetTpl.subarray(p, end));
        if (ne - p === 2) rr.writeUInt16BE(0xc000 | targetOffset, 0);
        parts.push(rr);
        count++;
        p = end;
      }
    }
    const edns = q.ednsSize > 0;
    const head = Buffer.allocUnsafe(q.questionEnd);
    q.msg.copy(head, 0, 0, q.questionEnd);
    head[2] = 0x84 | q.rd;
    head[3] = 0x80;
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(count, 6);
    head.writeUInt16BE(0, 8);
    head.writeUInt16BE(edns ? 1 : 0, 10);
    const opt = Buffer.allocUnsafe(edns ? OPT_LEN : 0);
    if (edns) writeOpt(opt, 0, ourSize, 0, q.dnssecOk);
    return Buffer.concat([head, ...parts, opt]);
  }

  /** True for names this zone answers (cluster zones, our PTR names): the cache must not keep them. */
  owns(q: Query): boolean {
    if (q.zi === -2) this.resolve(q);
    return q.zi >= 0 || q.entry !== undefined;
  }

  /** For tests: the dotted names in the zone. */
  listNames(): string[] {
    return [...this.names.keys()].map(keyToName).sort();
  }
}
