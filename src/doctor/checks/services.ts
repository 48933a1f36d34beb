/**
 * Rules programmed for every Service: the elements podwired says its last sync applied against
 * the elements in its nft table in the kernel. A difference means someone (or a failed apply)
 * changed our table behind podwired's back, so some Services are not (or wrongly) forwarded.
 */
import { componentStatus, finder, type Check, type Finding } from '../types';

const f = finder('services');

interface NftSetJson {
  name?: string;
  flags?: string[];
  elem?: unknown[];
}

/** Element counts per set/map of an `nft -j list table` answer, dynamic (packet-filled) sets left out. */
export function elementCounts(json: unknown): Map<string, number> {
  const out = new Map<string, number>();
  const items = (json as { nftables?: Record<string, unknown>[] } | undefined)?.nftables ?? [];
  for (const item of items) {
    const s = (item.set ?? item.map) as NftSetJson | undefined;
    if (!s?.name || s.flags?.includes('dynamic')) continue;
    out.set(s.name, Array.isArray(s.elem) ? s.elem.length : 0);
  }
  return out;
}

export const services: Check = {
  id: 'services',
  title: 'Service rules',
  async run(env) {
    const px = componentStatus(env, 'proxy');
    if (!env.status) return [f.warn('services', `no podwired status (${env.statusError ?? '?'}), Service rules not checked`, 'start podwired, or pass --socket')];
    if (!px) return [f.ok('services', 'the proxy component is not enabled on this node (kube-proxy programs Services)')];
    const n = typeof px.services === 'number' ? px.services : 0;
    const out: Finding[] = [];
    if (typeof px.invalidServices === 'number' && px.invalidServices > 0) out.push(f.warn('invalid Services', `${px.invalidServices} Service(s) rejected as invalid and not programmed`, 'podwire status lists the source problems; fix those Services'));
    if (px.mode !== 'nftables' || typeof px.table !== 'string') {
      out.push(f.ok('services', `${n} Services programmed in ${String(px.mode)} mode (podwired's count; the kernel comparison covers nftables mode)`));
      return out;
    }
    const [family, table] = px.table.split(' ');
    let json: unknown;
    try {
      json = await env.kernel.nft.listJson(`table ${family} ${table}`);
    } catch (err) {
      out.push(f.fail(`table ${px.table}`, `missing from the kernel (${err instanceof Error ? err.message.split('\n')[0] : String(err)}) although podwired programs ${n} Services`, 'restart podwired (it rebuilds its table); look in its log for who deleted it'));
      return out;
    }
    const counts = elementCounts(json);
    const kernel = [...counts.values()].reduce((a, b) => a + b, 0);
    const expected = typeof px.elements === 'number' ? px.elements : undefined;
    const vips = (counts.get('services4') ?? 0) + (counts.get('services6') ?? 0);
    if (n > 0 && vips === 0) out.push(f.fail(`table ${px.table}`, `podwired programs ${n} Services but the kernel's services maps are empty: no ClusterIP is forwarded`, 'restart podwired; its log says why the apply failed'));
    else if (expected !== undefined && kernel !== expected) out.push(f.fail(`table ${px.table}`, `${kernel} elements in the kernel, ${expected} applied by podwired's last sync: the table was changed outside podwired`, 'podwired repairs it on its next periodic sync; if it stays, look for another tool editing the table'));
    else out.push(f.ok(`table ${px.table}`, `${n} Services, ${kernel} elements (${vips} Service addresses) as podwired applied them`));
    return out;
  },
};
