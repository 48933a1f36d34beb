/**
 * Reading our own table back from a libnftables listing (`nft -j list table inet <t>`) into
 * Ruleset keys, when the netlink reader (kernel/nft-table.ts) cannot: at start-up (adoption)
 * and at the periodic read-back (the reconcile that repairs what was changed behind our back,
 * Ruleset.reconcile).
 */
import type { NftTableContent } from '../kernel';

function fmt(v: unknown): string | undefined {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (Array.isArray(o.concat)) {
      const parts = o.concat.map(fmt);
      return parts.every((p) => p !== undefined) ? parts.join(' . ') : undefined;
    }
    if (o.goto && typeof o.goto === 'object') return `goto ${(o.goto as { target: string }).target}`;
    if (o.jump && typeof o.jump === 'object') return `jump ${(o.jump as { target: string }).target}`;
    if ('drop' in o) return 'drop';
    if ('accept' in o) return 'accept';
    if ('return' in o) return 'return';
    if (o.prefix && typeof o.prefix === 'object') {
      const p = o.prefix as { addr: unknown; len: number };
      const a = fmt(p.addr);
      return a === undefined ? undefined : `${a}/${p.len}`;
    }
  }
  return undefined;
}

/**
 * Our table as read back: by the netlink reader (kernel/nft-table.ts) or parsed from a
 * libnftables listing (parseTable below); rule prints compare only within one source.
 */
export type AdoptedTable = NftTableContent;

/** `skipElements(name)`: sets whose content is the kernel's own (dynamic affinity sets). */
export function parseTable(json: unknown, table: string, skipElements: (name: string) => boolean): AdoptedTable {
  const out: AdoptedTable = { objects: new Map(), elements: new Map(), unknown: [], maps: new Set(), rules: new Map(), handles: new Map() };
  const items = (json as { nftables?: unknown[] })?.nftables ?? [];
  for (const item of items) {
    if (!item || typeof item !== 'object') continue;
    const rec = item as Record<string, Record<string, unknown>>;
    if (rec.chain && rec.chain.table === table) out.objects.set(String(rec.chain.name), 'chain');
    if (rec.rule && rec.rule.table === table) {
      const chain = String(rec.rule.chain);
      const print = JSON.stringify([rec.rule.expr ?? null, rec.rule.comment ?? null]);
      let p = out.rules.get(chain);
      if (!p) out.rules.set(chain, (p = []));
      p.push(print);
      let h = out.handles.get(chain);
      if (!h) out.handles.set(chain, (h = []));
      h.push(Number(rec.rule.handle));
      continue;
    }
    const s = rec.set ?? rec.map;
    if (!s || s.table !== table) continue;
    const name = String(s.name);
    out.objects.set(name, 'set');
    if (rec.map) out.maps.add(name);
    if (skipElements(name)) continue;
    const els = new Map<string, string>();
    let ok = true;
    for (const e of (s.elem as unknown[] | undefined) ?? []) {
      if (rec.map) {
        const pair = e as unknown[];
        const k = Array.isArray(pair) ? fmt(pair[0]) : undefined;
        const v = Array.isArray(pair) ? fmt(pair[1]) : undefined;
        if (k === undefined || v === undefined) ok = false;
        else els.set(k, v);
      } else {
        const k = fmt(e);
        if (k === undefined) ok = false;
        else els.set(k, '');
      }
    }
    if (ok) out.elements.set(name, els);
    else out.unknown.push(name);
  }
  return out;
}
