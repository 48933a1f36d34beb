/**
 * Desired state → diff against the kernel → batched apply, with per-node rollback.
 *
 * What is ours: routes with our rtm_protocol (main table), and every neighbour and FDB entry
 * on our own VXLAN devices (`pw.1`, and `pw-v6.1` on a dual-stack node with an IPv6 node
 * IP). Everything else is never listed as stale, so never touched.
 * A batch attempts every change (the kernel reports each failure); the three kinds go in
 * flannel's order (neighbour, FDB, route), a node whose entry failed is left out of the later
 * batches and then has what it got rolled back, so no node is left half-programmed.
 */
import type { BatchResult, Change, FdbEntry, NeighborEntry, NetworkKernel, Route } from '../kernel';
import type { PeerPlan } from './backend';

export interface KernelState {
  routes: Route[];
  neigh: NeighborEntry[];
  fdb: FdbEntry[];
}

/** One entry with its identity (`key`) and everything compared about it (`sig`). */
export interface Keyed<T> {
  key: string;
  sig: string;
  entry: T;
}

/** Our entries in the kernel, by key (from a dump, or from what the last sync applied). */
export interface IndexedState {
  routes: Map<string, Keyed<Route>>;
  neigh: Map<string, Keyed<NeighborEntry>>;
  fdb: Map<string, Keyed<FdbEntry>>;
}

/** One change and the node it is for (undefined: a stale entry being removed). */
export interface OwnedChange<T> {
  node: string | undefined;
  change: Change<T>;
}

export interface ChangeSet {
  neigh: OwnedChange<NeighborEntry>[];
  fdb: OwnedChange<FdbEntry>[];
  routes: OwnedChange<Route>[];
}

export interface ApplyOutcome {
  added: { route: number; neigh: number; fdb: number };
  removed: { route: number; neigh: number; fdb: number };
  /** Node → why its entries were rolled back. */
  failedNodes: Map<string, string>;
  /** Stale deletes that failed (entry + message). */
  failedDeletes: string[];
}

export function keyRoute(r: Route): Keyed<Route> {
  return {
    key: `${r.table ?? 254}|${r.dst.masked.toString()}|${r.metric ?? 0}`,
    sig: `${r.gateway ? r.gateway.toString() : ''}|${r.dev ?? ''}|${r.onlink ? 1 : 0}|${r.protocol ?? ''}|${r.type ?? 'unicast'}`,
    entry: r,
  };
}

export function keyNeigh(n: NeighborEntry): Keyed<NeighborEntry> {
  return { key: `${n.dev}|${n.ip.toString()}`, sig: `${n.mac.toLowerCase()}|${n.permanent ? 1 : 0}`, entry: n };
}

/** FDB: identity includes the remote (one MAC may have several); `sig` is the state. */
export function keyFdb(f: FdbEntry): Keyed<FdbEntry> {
  return { key: `${f.dev}|${f.mac.toLowerCase()}|${f.dst ? f.dst.toString() : ''}`, sig: f.permanent ? 'p' : '', entry: f };
}

export function indexState(s: KernelState): IndexedState {
  const out: IndexedState = { routes: new Map(), neigh: new Map(), fdb: new Map() };
  for (const r of s.routes) {
    const k = keyRoute(r);
    out.routes.set(k.key, k);
  }
  for (const n of s.neigh) {
    const k = keyNeigh(n);
    out.neigh.set(k.key, k);
  }
  for (const f of s.fdb) {
    if (f.dst === undefined) continue; // not a remote VTEP entry
    const k = keyFdb(f);
    out.fdb.set(k.key, k);
  }
  return out;
}

/** The plans as the state they leave in the kernel. */
export function stateOfPlans(plans: Iterable<KeyedPlan>): IndexedState {
  const out: IndexedState = { routes: new Map(), neigh: new Map(), fdb: new Map() };
  for (const p of plans) {
    for (const k of p.keys.routes) out.routes.set(k.key, k);
    for (const k of p.keys.neigh) out.neigh.set(k.key, k);
    for (const k of p.keys.fdb) out.fdb.set(k.key, k);
  }
  return out;
}

/** A plan with its entries' keys computed once (plans are cached across syncs). */
export interface KeyedPlan extends PeerPlan {
  keys: { routes: Keyed<Route>[]; neigh: Keyed<NeighborEntry>[]; fdb: Keyed<FdbEntry>[] };
}

/** Keys from the peer's precomputed texts, in exactly keyRoute/keyNeigh/keyFdb's format. */
export function keyPlan(p: PeerPlan): KeyedPlan {
  const r = p.route;
  const routes: Keyed<Route>[] = [];
  if (r) {
    const gw = p.modes.ipv4 === 'vxlan' ? p.peer.vtepText : p.peer.publicIpText;
    routes.push({ key: `${r.table ?? 254}|${p.peer.podCIDRText}|${r.metric ?? 0}`, sig: `${gw}|${r.dev ?? ''}|${r.onlink ? 1 : 0}|${r.protocol ?? ''}|${r.type ?? 'unicast'}`, entry: r });
  }
  const neigh: Keyed<NeighborEntry> | undefined = p.neigh && { key: `${p.neigh.dev}|${p.peer.vtepText}`, sig: `${p.neigh.mac}|${p.neigh.permanent ? 1 : 0}`, entry: p.neigh };
  const fdb: Keyed<FdbEntry> | undefined = p.fdb && { key: `${p.fdb.dev}|${p.fdb.mac}|${p.peer.publicIpText}`, sig: p.fdb.permanent ? 'p' : '', entry: p.fdb };
  const neighs = neigh ? [neigh] : [];
  if (p.route6) routes.push(keyRoute(p.route6));
  if (p.neigh6) neighs.push(keyNeigh(p.neigh6));
  const fdbs = fdb ? [fdb] : [];
  if (p.fdb6) fdbs.push(keyFdb(p.fdb6));
  return { ...p, keys: { routes, neigh: neighs, fdb: fdbs } };
}

function diffKind<T>(
  plans: readonly KeyedPlan[],
  pick: (p: KeyedPlan) => readonly Keyed<T>[],
  have: Map<string, Keyed<T>>,
  staleFirst: boolean,
  deleteFirst?: (have: T, want: T) => boolean,
): OwnedChange<T>[] {
  const adds: OwnedChange<T>[] = [];
  let found = 0;
  for (const p of plans) {
    for (const k of pick(p)) {
      const h = have.get(k.key);
      if (h) found++;
      if (h && h.sig !== k.sig && deleteFirst?.(h.entry, k.entry)) adds.push({ node: p.node, change: { op: 'delete', entry: h.entry } });
      if (!h || h.sig !== k.sig) adds.push({ node: p.node, change: { op: 'replace', entry: k.entry } });
    }
  }
  const stale: OwnedChange<T>[] = [];
  // Every entry we have was found among the wanted ones: nothing is stale, no walk needed.
  if (found < have.size) {
    const want = new Set<string>();
    for (const p of plans) for (const k of pick(p)) want.add(k.key);
    for (const [key, h] of have) if (!want.has(key)) stale.push({ node: undefined, change: { op: 'delete', entry: h.entry } });
  }
  return staleFirst ? [...stale, ...adds] : [...adds, ...stale];
}

/**
 * Diff the plans against what the kernel holds of ours. Neighbour and FDB deletes come first
 * (a VTEP MAC that moves to another remote: the old FDB entry goes, then the new one comes);
 * routes are make-before-break (adds first), except an IPv6 onlink route that changes device.
 */
export function diff(plans: readonly KeyedPlan[], actual: IndexedState): ChangeSet {
  return {
    neigh: diffKind(plans, (p) => p.keys.neigh, actual.neigh, true),
    fdb: diffKind(plans, (p) => p.keys.fdb, actual.fdb, true),
    routes: diffKind(plans, (p) => p.keys.routes, actual.routes, false, ipv6OnlinkMoves),
  };
}

/**
 * An IPv6 onlink route that changes device cannot be replaced in place: the kernel checks an
 * onlink gateway against the route it resolves through, which is the old route itself (its
 * prefix holds the VTEP address), and answers "Nexthop has invalid gateway or device mismatch".
 * So the old route goes first (pw.1 <-> pw-v6.1, or direct -> vxlan). IPv4 has no such check.
 */
function ipv6OnlinkMoves(have: Route, want: Route): boolean {
  return want.dst.family === 6 && want.onlink === true && have.dev !== want.dev;
}

function describe<T>(r: BatchResult<T>['failed'][number]): string {
  return r.message;
}

/**
 * Apply a change set: neighbours, FDB, routes, each in one batch; then roll back every node
 * that had a failure (delete what of it this sync programmed, routes first).
 */
export async function applyChangeSet(net: NetworkKernel, set: ChangeSet, plans: ReadonlyMap<string, PeerPlan>): Promise<ApplyOutcome> {
  const outcome: ApplyOutcome = {
    added: { route: 0, neigh: 0, fdb: 0 },
    removed: { route: 0, neigh: 0, fdb: 0 },
    failedNodes: new Map(),
    failedDeletes: [],
  };
  const done = { neigh: new Set<string>(), fdb: new Set<string>(), route: new Set<string>() };

  async function run<T>(kind: 'neigh' | 'fdb' | 'route', list: OwnedChange<T>[], apply: (c: Change<T>[]) => Promise<BatchResult<T>>): Promise<void> {
    const todo = list.filter((c) => c.node === undefined || !outcome.failedNodes.has(c.node));
    if (todo.length === 0) return;
    const res = await apply(todo.map((c) => c.change));
    const failedAt = new Set<number>();
    for (const f of res.failed) {
      failedAt.add(f.index);
      const owner = todo[f.index]!.node;
      if (owner === undefined) outcome.failedDeletes.push(describe(f));
      else if (!outcome.failedNodes.has(owner)) outcome.failedNodes.set(owner, describe(f));
    }
    todo.forEach((c, i) => {
      if (failedAt.has(i)) return;
      if (c.change.op === 'delete') outcome.removed[kind]++;
      else {
        outcome.added[kind]++;
        if (c.node !== undefined) done[kind].add(c.node);
      }
    });
  }

  await run('neigh', set.neigh, (c) => net.applyNeighbors(c));
  await run('fdb', set.fdb, (c) => net.applyFdb(c));
  await run('route', set.routes, (c) => net.applyRoutes(c));

  if (outcome.failedNodes.size > 0) {
    // Roll back: every entry of a failed node goes, whether this sync or an earlier one put it there.
    const routes: Change<Route>[] = [];
    const fdb: Change<FdbEntry>[] = [];
    const neigh: Change<NeighborEntry>[] = [];
    for (const node of outcome.failedNodes.keys()) {
      const p = plans.get(node);
      if (!p) continue;
      if (p.route) routes.push({ op: 'delete', entry: p.route });
      if (p.route6) routes.push({ op: 'delete', entry: p.route6 });
      if (p.fdb) fdb.push({ op: 'delete', entry: p.fdb });
      if (p.fdb6) fdb.push({ op: 'delete', entry: p.fdb6 });
      if (p.neigh) neigh.push({ op: 'delete', entry: p.neigh });
      if (p.neigh6) neigh.push({ op: 'delete', entry: p.neigh6 });
      for (const k of ['neigh', 'fdb', 'route'] as const) if (done[k].delete(node)) outcome.added[k]--;
    }
    if (routes.length) await net.applyRoutes(routes);
    if (fdb.length) await net.applyFdb(fdb);
    if (neigh.length) await net.applyNeighbors(neigh);
  }
  return outcome;
}
