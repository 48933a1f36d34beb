/**
 * "Rules programmed for every Service": which Service addresses the kernel has, read back
 * from the active proxy mode's own state, against the list podwired derives from the
 * cluster state (src/proxy/expected.ts). Pure functions, unit-tested with fakes.
 *
 * A key is `<family>|<address> . <proto> . <port>` for a ClusterIP, externalIP or LB IP, and
 * `<family>|<proto> . <nodePort>` for a NodePort:
 *   nftables  the keys of services4/6 and no-endpoints4/6 (a Service without endpoints is
 *             programmed there, as a reject), nodeports4/6 and no-endpoint-nodeports4/6;
 *   iptables  the -d/-p/--dport of the rules in PODWIRE-SERVICES (nat: forwarded; filter: no
 *             endpoints, rejected), PODWIRE-EXT-SERVICES (filter) and PODWIRE-NODEPORTS (nat);
 *   ipvs      the virtual servers (a NodePort is one virtual server per node address: any
 *             address with that protocol and port counts).
 */
import type { IpvsService } from '../kernel/ipvs/codec';
import { parseTable } from '../proxy/adopt';
import type { ExpectedEntry, ExpectedServices } from '../proxy/expected';
import { CH } from '../proxy/iptables/names';
import { canonicalIP, type Family } from '../proxy/model';

export interface Present {
  vips: Set<string>;
  nodePorts: Set<string>;
}

export const emptyPresent = (): Present => ({ vips: new Set(), nodePorts: new Set() });

const vipKey = (f: Family, address: string, proto: string, port: number | string): string => `${f}|${address} . ${proto} . ${port}`;
const npKey = (f: Family, proto: string, port: number | string): string => `${f}|${proto} . ${port}`;

export function entryKey(e: ExpectedEntry): { nodePort: boolean; key: string } {
  const [, kind, f, address, proto, port] = e;
  return kind === 'n' ? { nodePort: true, key: npKey(f, proto, port) } : { nodePort: false, key: vipKey(f, address, proto, port) };
}

/** `ns/name 10.96.0.1:443/tcp`, `[fd00::1]:53/udp`, `nodePort 30080/tcp`. */
export function describeEntry(e: ExpectedEntry): string {
  const [, kind, f, address, proto, port] = e;
  if (kind === 'n') return `nodePort ${port}/${proto}`;
  return `${f === 6 ? `[${address}]` : address}:${port}/${proto}${kind === 'x' ? ' (externalIP)' : kind === 'l' ? ' (LB IP)' : ''}`;
}

/** From `nft -j list table inet <name>` of our table. */
export function nftPresent(json: unknown, table: string): Present {
  const t = parseTable(json, table, (name) => name.startsWith('affinity'));
  const out = emptyPresent();
  for (const f of [4, 6] as const) {
    for (const m of [`services${f}`, `no-endpoints${f}`]) for (const k of t.elements.get(m)?.keys() ?? []) out.vips.add(`${f}|${k}`);
    for (const m of [`nodeports${f}`, `no-endpoint-nodeports${f}`]) for (const k of t.elements.get(m)?.keys() ?? []) out.nodePorts.add(`${f}|${k}`);
  }
  return out;
}

/** The words of one iptables-save rule, quoted strings (comments) collapsed to one word. */
function words(rule: string): string[] {
  return rule.replace(/"(?:[^"\\]|\\.)*"/g, '""').split(/\s+/).filter((w) => w !== '');
}

/** From `iptables-save -t nat` and `-t filter` of one family (ip6tables-save for 6). */
export function iptablesPresent(family: Family, natSave: string, filterSave: string, into: Present = emptyPresent()): Present {
  const scan = (save: string, chains: Set<string>, nodePortChain: string | undefined): void => {
    for (const line of save.split('\n')) {
      if (!line.startsWith('-A ')) continue;
      const w = words(line);
      const chain = w[1]!;
      if (!chains.has(chain) && chain !== nodePortChain) continue;
      let dst: string | undefined;
      let proto: string | undefined;
      let dport: string | undefined;
      let target = false;
      for (let i = 2; i < w.length; i++) {
        if (w[i] === '-d' && w[i - 1] !== '!') dst = w[i + 1];
        else if (w[i] === '-p' && w[i - 1] !== '!') proto = w[i + 1];
        else if (w[i] === '--dport') dport = w[i + 1];
        else if (w[i] === '-j') target = true;
      }
      if (!proto || !dport || !target) continue; // the NodePorts jump, masquerade rules, ...
      if (chain === nodePortChain || dst === undefined) into.nodePorts.add(npKey(family, proto, dport));
      else into.vips.add(vipKey(family, canonicalIP(dst.replace(/\/(32|128)$/, '')), proto, dport));
    }
  };
  scan(natSave, new Set([CH.services]), CH.nodePorts);
  // filter's PODWIRE-NODEPORTS holds health-check ports (ACCEPT), not NodePorts.
  scan(filterSave, new Set([CH.services, CH.extServices]), undefined);
  return into;
}

/** From the IPVS virtual servers (fwmark services are not ours). */
export function ipvsPresent(services: readonly IpvsService[]): Present {
  const out = emptyPresent();
  for (const s of services) {
    if (s.fwmark !== undefined || s.address === undefined) continue;
    out.vips.add(vipKey(s.family, canonicalIP(s.address), s.protocol, s.port));
    out.nodePorts.add(npKey(s.family, s.protocol, s.port));
  }
  return out;
}

export interface Comparison {
  /** Services with at least one entry missing, in the expected list's order. */
  missing: { service: string; entries: ExpectedEntry[] }[];
  missingEntries: number;
  entries: number;
  services: number;
}

export function compareServices(expected: Pick<ExpectedServices, 'entries' | 'services'>, present: Present): Comparison {
  const bySvc = new Map<string, ExpectedEntry[]>();
  let missingEntries = 0;
  for (const e of expected.entries) {
    const { nodePort, key } = entryKey(e);
    if ((nodePort ? present.nodePorts : present.vips).has(key)) continue;
    missingEntries++;
    let l = bySvc.get(e[0]);
    if (!l) bySvc.set(e[0], (l = []));
    l.push(e);
  }
  return { missing: [...bySvc].map(([service, entries]) => ({ service, entries })), missingEntries, entries: expected.entries.length, services: expected.services };
}

/** `default/web 10.96.0.20:80/tcp, default/dns 10.96.0.10:53/udp +1, ... and 7 more Services`. */
export function describeMissing(c: Comparison, limit = 5): string {
  const shown = c.missing.slice(0, limit).map((m) => `${m.service} ${describeEntry(m.entries[0]!)}${m.entries.length > 1 ? ` +${m.entries.length - 1}` : ''}`);
  const more = c.missing.length - shown.length;
  return shown.join(', ') + (more > 0 ? `, and ${more} more Service${more === 1 ? '' : 's'}` : '');
}
