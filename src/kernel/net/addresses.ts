/** Addresses: list (optionally of one link), add (the exact address already there is success), delete (idempotent). */
import { AlreadyExistsError } from '../../common/errors';
import type { Cidr } from '../../common/ip';
import { E } from '../errno';
import { decodeAddr, encodeDelAddr, encodeDumpAddrs, encodeNewAddr } from '../rtnetlink/addr';
import type { AddressEntry } from '../types';
import { toCidr } from '../validate';
import { errnoOf, type NetContext } from './context';

export async function listAddresses(ctx: NetContext, dev?: string, family?: 4 | 6): Promise<AddressEntry[]> {
  const index = dev === undefined ? undefined : await ctx.indexOf(dev, 'dev');
  const replies = await ctx.call('list addresses', encodeDumpAddrs(family ?? 0));
  const out: AddressEntry[] = [];
  for (const m of replies) {
    const a = decodeAddr(m);
    if (a && (index === undefined || a.linkIndex === index)) out.push(a);
  }
  return out;
}

export async function addAddress(ctx: NetContext, dev: string, cidr: Cidr, opts?: { nodad?: boolean }): Promise<void> {
  const c = toCidr(cidr, 'cidr');
  const index = await ctx.indexOf(dev, 'dev');
  try {
    await ctx.call('add address', encodeNewAddr(index, c, opts), 'cidr', c.toString());
  } catch (err) {
    if (errnoOf(err) !== E.EEXIST) throw err;
    const have = await listAddresses(ctx, dev, c.family);
    if (have.some((a) => a.cidr.ip.equals(c.ip) && a.cidr.prefixLength === c.prefixLength)) return;
    throw new AlreadyExistsError('address', `${c.ip.toString()} on ${dev} (with another prefix length)`, err);
  }
}

export async function deleteAddress(ctx: NetContext, dev: string, cidr: Cidr): Promise<void> {
  const c = toCidr(cidr, 'cidr');
  const index = await ctx.indexOf(dev, 'dev');
  try {
    await ctx.call('delete address', encodeDelAddr(index, c), 'cidr', c.toString());
  } catch (err) {
    if (errnoOf(err) !== E.EADDRNOTAVAIL) throw err;
  }
}
