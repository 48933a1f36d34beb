/** Routes: validation, list (main table by default), add/replace/delete (a missing route or device is a successful delete). */
import { InvalidInputError } from '../../common/errors';
import { Cidr, IpAddress } from '../../common/ip';
import { E } from '../errno';
import * as C from '../rtnetlink/constants';
import { decodeRoute, encodeDelRoute, encodeDumpRoutes, encodeNewRoute, type RouteWire } from '../rtnetlink/route';
import type { Route } from '../types';
import { validateIfName, validateMtu, validateU32, validateU8 } from '../validate';
import { errnoOf, type NetContext } from './context';

export function checkRoute(r: Route, field = 'route'): void {
  if (!(r.dst instanceof Cidr)) throw new InvalidInputError(`${field}.dst`, r.dst, 'expected a Cidr');
  if (r.gateway !== undefined && (!(r.gateway instanceof IpAddress) || r.gateway.family !== r.dst.family)) {
    throw new InvalidInputError(`${field}.gateway`, String(r.gateway), `expected an IPv${r.dst.family} address`);
  }
  if (r.metric !== undefined) validateU32(r.metric, `${field}.metric`);
  if (r.table !== undefined) validateU32(r.table, `${field}.table`);
  if (r.protocol !== undefined) validateU8(r.protocol, `${field}.protocol`);
  if (r.mtu !== undefined) validateMtu(r.mtu, `${field}.mtu`);
  if (r.dev !== undefined) validateIfName(r.dev, `${field}.dev`);
}

async function routeWire(ctx: NetContext, r: Route): Promise<RouteWire> {
  checkRoute(r);
  return { route: r, oif: r.dev !== undefined ? await ctx.indexOf(r.dev, 'dev') : undefined };
}

/** `table` defaults to main (254); pass 0 for every table. Cloned cache entries are skipped. */
export async function listRoutes(ctx: NetContext, options: { family?: 4 | 6; table?: number; protocol?: number } = {}): Promise<Route[]> {
  const families: (4 | 6)[] = options.family ? [options.family] : [4, 6];
  const table = options.table ?? C.RT_TABLE_MAIN;
  const names = await ctx.indexNames();
  const out: Route[] = [];
  for (const f of families) {
    for (const m of await ctx.call('list routes', encodeDumpRoutes(f))) {
      const d = decodeRoute(m);
      if (d.cloned) continue;
      if (![C.RTN_UNICAST, C.RTN_LOCAL, C.RTN_BLACKHOLE, C.RTN_UNREACHABLE].includes(d.rtnType)) continue;
      if (table !== 0 && d.route.table !== table) continue;
      if (options.protocol !== undefined && d.route.protocol !== options.protocol) continue;
      if (d.oif !== undefined) d.route.dev = names.get(d.oif);
      out.push(d.route);
    }
  }
  return out;
}

export async function addRoute(ctx: NetContext, route: Route): Promise<void> {
  await ctx.call('add route', encodeNewRoute(await routeWire(ctx, route), 'add'), 'route.dst', String(route.dst));
}

export async function replaceRoute(ctx: NetContext, route: Route): Promise<void> {
  await ctx.call('replace route', encodeNewRoute(await routeWire(ctx, route), 'replace'), 'route.dst', String(route.dst));
}

export async function deleteRoute(ctx: NetContext, route: Route): Promise<void> {
  checkRoute(route);
  let oif: number | undefined;
  if (route.dev !== undefined) {
    const link = await ctx.getLink(route.dev);
    if (!link) return; // the device and its routes are gone
    oif = link.index;
  }
  try {
    await ctx.call('delete route', encodeDelRoute({ route, oif }), 'route.dst', String(route.dst));
  } catch (err) {
    if (errnoOf(err) !== E.ESRCH) throw err;
  }
}
