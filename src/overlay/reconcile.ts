/**
 * Desired state → diff against the kernel → batched apply, with per-node rollback.
 *
 * What is ours: routes with our rtm_protocol (main table), and every neighbour and FDB entry
 * on our own VXLAN device. Everything else is never listed as stale, so never touched.
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

export const routeKey = (r: Route): string => `${r.table ?? 254}|${r.dst.masked.toString()}|${r.metric ?? 0}`;
const neighKey = (n: NeighborEntry): string => `${n.dev}|${String(n.ip)}`;

function sameRoute(a: Route, d: Route): boolean {
  return (
    String(a.gateway ?? '') === String(d.gateway ?? '') &&
    a.dev === d.dev &&
    !!a.onlink === !!d.onlink &&
    (a.type ?? 'unicast') === 'unicast' &&
    a.protocol === d.protocol
  );
}

/** Diff the plans against what the kernel holds of ours. Stale neighbour/FDB deletes come first; route deletes last. */
export function diff(plans: readonly PeerPlan[], actual: KernelState): ChangeSet {
  const out: ChangeSet = { neigh: [], fdb: [], routes: [] };

  const haveRoutes = new Map<string, Route>();
  for (const r of actual.routes) haveRoutes.set(routeKey(r), r);
  const wantRoutes = new Set<string>();
  const routeAdds: OwnedChange<Route>[] = [];
  for (const p of plans) {
    const k = routeKey(p.route);
    wantRoutes.add(k);
    const have = haveRoutes.get(k);
    if (!have || !sameRoute(have, p.route)) routeAdds.push({ node: p.node, change: { op: 'replace', entry: p.route } });
  }
  // Routes: make before break (a route that moves to another metric is added before the old goes).
  out.routes.push(...routeAdds);
  for (const [k, r] of haveRoutes) if (!wantRoutes.has(k)) out.routes.push({ node: undefined, change: { op: 'delete', entry: r } });

  const haveNeigh = new Map<string, NeighborEntry>();
  for (const n of actual.neigh) haveNeigh.set(neighKey(n), n);
  const wantNeigh = new Set<string>();
  const neighAdds: OwnedChange<NeighborEntry>[] = [];
  for (const p of plans) {
    if (!p.neigh) continue;
    const k = neighKey(p.neigh);
    wantNeigh.add(k);
    const have = haveNeigh.get(k);
    if (!have || have.mac.toLowerCase() !== p.neigh.mac || !have.permanent) neighAdds.push({ node: p.node, change: { op: 'replace', entry: p.neigh } });
  }
  for (const [k, n] of haveNeigh) if (!wantNeigh.has(k)) out.neigh.push({ node: undefined, change: { op: 'delete', entry: n } });
  out.neigh.push(...neighAdds);

  // FDB: several entries may share a MAC (one per remote); we want exactly one, ours.
  const haveFdb = new Map<string, FdbEntry[]>();
  for (const f of actual.fdb) {
    if (f.dst === undefined) continue; // not a remote VTEP entry
    const k = `${f.dev}|${f.mac.toLowerCase()}`;
    const list = haveFdb.get(k);
    if (list) list.push(f);
    else haveFdb.set(k, [f]);
  }
  const fdbAdds: OwnedChange<FdbEntry>[] = [];
  const wantFdb = new Set<string>();
  for (const p of plans) {
    if (!p.fdb) continue;
    const k = `${p.fdb.dev}|${p.fdb.mac}`;
    wantFdb.add(k);
    const have = haveFdb.get(k) ?? [];
    const dst = String(p.fdb.dst);
    let good = false;
    for (const h of have) {
      if (String(h.dst) === dst && h.permanent) good = true;
      else out.fdb.push({ node: undefined, change: { op: 'delete', entry: h } });
    }
    if (!good) fdbAdds.push({ node: p.node, change: { op: 'replace', entry: p.fdb } });
  }
  for (const [k, list] of haveFdb) if (!wantFdb.has(k)) for (const f of list) out.fdb.push({ node: undefined, change: { op: 'delete', entry: f } });
  out.fdb.push(...fdbAdds);
  return out;
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
      routes.push({ op: 'delete', entry: p.route });
      if (p.fdb) fdb.push({ op: 'delete', entry: p.fdb });
      if (p.neigh) neigh.push({ op: 'delete', entry: p.neigh });
      for (const k of ['neigh', 'fdb', 'route'] as const) if (done[k].delete(node)) outcome.added[k]--;
    }
    if (routes.length) await net.applyRoutes(routes);
    if (fdb.length) await net.applyFdb(fdb);
    if (neigh.length) await net.applyNeighbors(neigh);
  }
  return outcome;
}
