/** IP neighbours (ARP/NDP entries) and bridge/VXLAN FDB entries: both are RTM_*NEIGH messages. */
import { E } from '../errno';
import * as C from '../rtnetlink/constants';
import { decodeNeigh, encodeDelNeigh, encodeDumpNeigh, encodeNewNeigh, type NeighWire } from '../rtnetlink/neigh';
import type { FdbEntry, NeighborEntry } from '../types';
import { macBytes, validateIfName } from '../validate';
import { errnoOf, toIp, type NetContext } from './context';

export function neighWire(n: NeighborEntry, index: number): NeighWire {
  const ip = toIp(n.ip, 'ip');
  return {
    family: ip.family === 4 ? C.AF_INET : C.AF_INET6,
    ifindex: index,
    state: n.permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE,
    flags: 0,
    dst: ip,
    lladdr: macBytes(n.mac),
  };
}

export function fdbWire(f: FdbEntry, index: number): NeighWire {
  return {
    family: C.AF_BRIDGE,
    ifindex: index,
    state: f.permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE,
    flags: C.NTF_SELF,
    dst: f.dst !== undefined ? toIp(f.dst, 'dst') : undefined,
    lladdr: macBytes(f.mac),
  };
}

export async function listNeighbors(ctx: NetContext, dev?: string): Promise<NeighborEntry[]> {
  const index = dev === undefined ? undefined : await ctx.indexOf(dev, 'dev');
  const names = await ctx.indexNames();
  const out: NeighborEntry[] = [];
  for (const fam of [C.AF_INET, C.AF_INET6]) {
    for (const m of await ctx.call('list neighbours', encodeDumpNeigh(fam))) {
      const n = decodeNeigh(m);
      if (!n.dst || !n.mac || (n.state & C.NUD_NOARP) !== 0) continue;
      if (index !== undefined && n.ifindex !== index) continue;
      out.push({ dev: names.get(n.ifindex) ?? String(n.ifindex), ip: n.dst, mac: n.mac, permanent: (n.state & C.NUD_PERMANENT) !== 0 });
    }
  }
  return out;
}

export async function replaceNeighbor(ctx: NetContext, entry: NeighborEntry): Promise<void> {
  const w = neighWire(entry, await ctx.indexOf(entry.dev, 'dev'));
  await ctx.call('replace neighbour', encodeNewNeigh(w, 'replace'), 'ip', String(entry.ip));
}

export async function deleteNeighbor(ctx: NetContext, entry: NeighborEntry): Promise<void> {
  const link = await ctx.getLink(validateIfName(entry.dev, 'dev'));
  if (!link) return;
  try {
    await ctx.call('delete neighbour', encodeDelNeigh(neighWire(entry, link.index)), 'ip', String(entry.ip));
  } catch (err) {
    if (errnoOf(err) !== E.ENOENT) throw err;
  }
}

export async function listFdb(ctx: NetContext, dev?: string): Promise<FdbEntry[]> {
  const index = dev === undefined ? undefined : await ctx.indexOf(dev, 'dev');
  const names = await ctx.indexNames();
  const out: FdbEntry[] = [];
  for (const m of await ctx.call('list fdb', encodeDumpNeigh(C.AF_BRIDGE))) {
    const n = decodeNeigh(m);
    if (!n.mac || (index !== undefined && n.ifindex !== index)) continue;
    const e: FdbEntry = { dev: names.get(n.ifindex) ?? String(n.ifindex), mac: n.mac, permanent: (n.state & C.NUD_PERMANENT) !== 0 };
    if (n.dst) e.dst = n.dst;
    out.push(e);
  }
  return out;
}

export async function appendFdb(ctx: NetContext, entry: FdbEntry): Promise<void> {
  const w = fdbWire(entry, await ctx.indexOf(entry.dev, 'dev'));
  await ctx.call('append fdb', encodeNewNeigh(w, 'append'), 'mac', entry.mac);
}

export async function replaceFdb(ctx: NetContext, entry: FdbEntry): Promise<void> {
  const w = fdbWire(entry, await ctx.indexOf(entry.dev, 'dev'));
  await ctx.call('replace fdb', encodeNewNeigh(w, 'replace'), 'mac', entry.mac);
}

export async function deleteFdb(ctx: NetContext, entry: FdbEntry): Promise<void> {
  const link = await ctx.getLink(validateIfName(entry.dev, 'dev'));
  if (!link) return;
  try {
    await ctx.call('delete fdb', encodeDelNeigh(fdbWire(entry, link.index)), 'mac', entry.mac);
  } catch (err) {
    if (errnoOf(err) !== E.ENOENT) throw err;
  }
}
