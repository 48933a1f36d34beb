/**
 * `--allocate-node-cidrs`: Podwire hands out pod CIDRs when kube-controller-manager does not,
 * like its range allocator (pkg/controller/nodeipam/ipam/range_allocator.go):
 *
 *  - one podwired at a time allocates: the holder of the Lease `<namespace>/podwire-node-cidr-allocator`
 *    (leader election with client-go's semantics, src/k8s/leader-election.ts);
 *  - the leader lists every Node and rebuilds the used set from all of them before it
 *    allocates anything (a new leader never trusts a predecessor's memory), then gives each
 *    Node without `spec.podCIDRs`, in name order, the lowest free subnet of each cluster
 *    CIDR (one per family for dual-stack), by a merge PATCH of `spec.podCIDR`/`spec.podCIDRs`
 *    with the Node's resourceVersion as a precondition (a Node changed meanwhile is 409 and
 *    is looked at again on the next pass);
 *  - a CIDR already set is never changed (a Node with any pod CIDR is left alone);
 *  - the subnet of a deleted Node is free again only after `releaseGraceMs`; those releases
 *    live in the Lease's annotation `podwire.io/released-pod-cidrs` (written with every renew),
 *    so a new leader honours its predecessor's grace periods.
 *
 * Known limit: a Node deleted while no leader was watching is not seen being deleted, so its
 * subnet is free at once for the next leader (as with kube-controller-manager).
 */
import type { Clock, Logger } from '../common';
import { errorMessage, sleepOn, systemClock } from '../common';
import { Cidr, IpAddress } from '../common/ip';
import { InvalidInputError } from '../common/errors';
import { ApiError, type ApiTransport } from '../k8s/api-client';
import { LeaderElector, type LeaseRecord } from '../k8s/leader-election';

export const ALLOCATOR_LEASE_NAME = 'podwire-node-cidr-allocator';
export const RELEASED_ANNOTATION = 'podwire.io/released-pod-cidrs';

export interface NodeCidrAllocatorOptions {
  transport: ApiTransport;
  identity: string;
  /** The cluster CIDRs, at most one per family. */
  clusterCIDRs: Cidr[];
  maskSizeV4: number;
  maskSizeV6: number;
  releaseGraceMs: number;
  leaseNamespace: string;
  leaseName?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** How often the leader lists Nodes. */
  resyncMs?: number;
  logger: Logger;
  clock?: Clock;
  /** Called after each successful PATCH (tests, metrics). */
  onAllocated?(node: string, cidrs: string[]): void;
}

interface NodeView {
  name: string;
  resourceVersion: string;
  podCIDRs: string[];
}

/** The subnet pool of one cluster CIDR at one mask size. */
export class SubnetPool {
  readonly count: bigint;
  private readonly step: bigint;
  constructor(
    readonly cluster: Cidr,
    readonly maskSize: number,
  ) {
    if (!Number.isInteger(maskSize) || maskSize < cluster.prefixLength || maskSize > cluster.ip.bits) {
      throw new InvalidInputError(cluster.family === 4 ? 'nodeCidrMaskSize' : 'nodeCidrMaskSizeIpv6', maskSize, `must be ${cluster.prefixLength}..${cluster.ip.bits} for cluster CIDR ${cluster.toString()}`);
    }
    this.count = 1n << BigInt(maskSize - cluster.prefixLength);
    this.step = 1n << BigInt(cluster.ip.bits - maskSize);
  }

  subnet(i: bigint): Cidr {
    return Cidr.of(IpAddress.fromBigInt(this.cluster.family, this.cluster.network.value + i * this.step), this.maskSize);
  }

  /** Indexes of our subnets that `c` overlaps (empty when outside the cluster CIDR). */
  overlapped(c: Cidr): [bigint, bigint] | undefined {
    if (c.family !== this.cluster.family) return undefined;
    const lo = c.network.value;
    const hi = c.last.value;
    const base = this.cluster.network.value;
    const top = this.cluster.last.value;
    if (hi < base || lo > top) return undefined;
    const a = ((lo > base ? lo : base) - base) / this.step;
    const b = ((hi < top ? hi : top) - base) / this.step;
    return [a, b];
  }

  /**
   * The lowest index ≥ `from` not in `used`, or undefined when the pool is full. At most
   * |used| + 1 probes, since every probe that fails hits a used index.
   */
  lowestFree(used: Set<bigint>, from = 0n): bigint | undefined {
    for (let i = from; i < this.count; i++) if (!used.has(i)) return i;
    return undefined;
  }
}

/**
 * One pass: which Nodes get which CIDRs, given every Node and the released-in-grace CIDRs.
 * Pure, so the "never twice" rule is testable without a server.
 */
export function planAllocations(pools: readonly SubnetPool[], nodes: readonly NodeView[], held: readonly string[]): { node: NodeView; cidrs: string[] }[] | { error: string } {
  const used = pools.map(() => new Set<bigint>());
  const mark = (text: string): void => {
    let c: Cidr;
    try {
      c = Cidr.parse(text);
    } catch {
      return;
    }
    pools.forEach((p, i) => {
      const r = p.overlapped(c);
      if (r) for (let k = r[0]; k <= r[1] && k - r[0] < 1_000_000n; k++) used[i]!.add(k);
    });
  };
  for (const n of nodes) for (const c of n.podCIDRs) mark(c);
  for (const c of held) mark(c);
  const out: { node: NodeView; cidrs: string[] }[] = [];
  // Allocations in one pass only go up: each search starts where the last one ended (O(N) per pass, not O(N²)).
  const cursor = pools.map(() => 0n);
  for (const n of [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (n.podCIDRs.length > 0) continue; // never change a CIDR that is set
    const cidrs: string[] = [];
    for (const [i, p] of pools.entries()) {
      const free = p.lowestFree(used[i]!, cursor[i]);
      if (free === undefined) return { error: `cluster CIDR ${p.cluster.toString()} has no free /${p.maskSize} left for node ${n.name}` };
      used[i]!.add(free);
      cursor[i] = free + 1n;
      cidrs.push(p.subnet(free).toString());
    }
    out.push({ node: n, cidrs });
  }
  return out;
}

function nodeView(raw: Record<string, unknown>): NodeView | undefined {
  const meta = raw.metadata as { name?: string; resourceVersion?: string } | undefined;
  const spec = (raw.spec ?? {}) as { podCIDR?: string; podCIDRs?: string[] };
  if (!meta?.name) return undefined;
  const podCIDRs = Array.isArray(spec.podCIDRs) && spec.podCIDRs.length ? spec.podCIDRs.filter((x) => typeof x === 'string') : spec.podCIDR ? [spec.podCIDR] : [];
  return { name: meta.name, resourceVersion: meta.resourceVersion ?? '', podCIDRs };
}

export class NodeCidrAllocator {
  private readonly clock: Clock;
  private readonly pools: SubnetPool[];
  /** CIDR → when its Node was seen deleted (ms, our clock). */
  private released = new Map<string, number>();
  /** Node → its CIDRs as last listed (to see deletions). */
  private known = new Map<string, string[]>();
  readonly elector: LeaderElector;
  allocations = 0;
  passes = 0;

  constructor(private readonly o: NodeCidrAllocatorOptions) {
    this.clock = o.clock ?? systemClock;
    const fams = new Set(o.clusterCIDRs.map((c) => c.family));
    if (fams.size !== o.clusterCIDRs.length) throw new InvalidInputError('clusterCIDR', o.clusterCIDRs.join(','), 'at most one CIDR per family for --allocate-node-cidrs');
    this.pools = o.clusterCIDRs.map((c) => new SubnetPool(c.masked, c.family === 4 ? o.maskSizeV4 : o.maskSizeV6));
    this.elector = new LeaderElector({
      transport: o.transport,
      namespace: o.leaseNamespace,
      name: o.leaseName ?? ALLOCATOR_LEASE_NAME,
      identity: o.identity,
      leaseDurationMs: o.leaseDurationMs,
      renewDeadlineMs: o.renewDeadlineMs,
      retryPeriodMs: o.retryPeriodMs,
      logger: o.logger,
      clock: this.clock,
      onStartedLeading: (signal, lease) => this.lead(signal, lease),
      onNewLeader: (id) => o.logger.info({ leader: id }, 'node CIDR allocator leader'),
      annotations: (current) => {
        this.absorb(current[RELEASED_ANNOTATION]);
        return { [RELEASED_ANNOTATION]: this.releasedAnnotation() };
      },
    });
  }

  run(signal: AbortSignal): Promise<void> {
    return this.elector.run(signal);
  }

  status(): Record<string, unknown> {
    return { leader: this.elector.leader, isLeader: this.elector.isLeader, allocations: this.allocations, releasedInGrace: [...this.released.keys()] };
  }

  private releasedAnnotation(): string {
    const now = this.clock.now();
    const out: Record<string, number> = {};
    for (const [c, at] of this.released) if (now - at < this.o.releaseGraceMs) out[c] = at;
    return JSON.stringify(out);
  }

  /** Takes over the grace periods recorded on the Lease (by a predecessor; wall-clock ms). */
  private absorb(text: string | undefined): void {
    if (!text) return;
    try {
      const prev = JSON.parse(text) as Record<string, unknown>;
      for (const [c, at] of Object.entries(prev)) if (typeof at === 'number') this.released.set(c, Math.max(this.released.get(c) ?? 0, at));
    } catch {
      this.o.logger.warn({ annotation: RELEASED_ANNOTATION }, 'the lease annotation of released CIDRs is not JSON; ignored');
    }
  }

  private async lead(signal: AbortSignal, lease: LeaseRecord): Promise<void> {
    const log = this.o.logger;
    this.known.clear();
    this.absorb(lease.annotations[RELEASED_ANNOTATION]);
    while (!signal.aborted) {
      try {
        await this.pass(signal);
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'node CIDR allocation pass failed; retrying');
      }
      await sleepOn(this.clock, this.o.resyncMs ?? 1000, signal);
    }
  }

  /** List every Node, rebuild the used set, allocate to each Node without pod CIDRs. */
  async pass(signal: AbortSignal): Promise<void> {
    const t = this.o.transport;
    if (!t.requestJson) throw new TypeError('the allocator needs a transport that can PATCH');
    this.passes++;
    const list = await t.getJson('/api/v1/nodes', {}, signal);
    const nodes = ((list.items as Record<string, unknown>[] | undefined) ?? []).map(nodeView).filter((n): n is NodeView => n !== undefined);
    const now = this.clock.now();
    const present = new Set(nodes.map((n) => n.name));
    for (const [name, cidrs] of this.known) if (!present.has(name)) for (const c of cidrs) this.released.set(c, now);
    this.known = new Map(nodes.filter((n) => n.podCIDRs.length).map((n) => [n.name, n.podCIDRs]));
    for (const [c, at] of this.released) if (now - at >= this.o.releaseGraceMs) this.released.delete(c);
    // A CIDR in use again (a Node re-created with it) is not "released".
    for (const n of nodes) for (const c of n.podCIDRs) this.released.delete(c);
    const plan = planAllocations(this.pools, nodes, [...this.released.keys()]);
    if ('error' in plan) {
      this.o.logger.error({ error: plan.error }, 'cannot allocate a pod CIDR');
      return;
    }
    for (const { node, cidrs } of plan) {
      if (signal.aborted) return; // no longer the leader: not one more write
      try {
        await t.requestJson(
          {
            method: 'PATCH',
            path: `/api/v1/nodes/${encodeURIComponent(node.name)}`,
            contentType: 'application/merge-patch+json',
            body: { metadata: { resourceVersion: node.resourceVersion }, spec: { podCIDR: cidrs[0], podCIDRs: cidrs } },
          },
          signal,
        );
        this.allocations++;
        this.known.set(node.name, cidrs);
        this.o.logger.info({ node: node.name, podCIDRs: cidrs }, 'allocated pod CIDRs');
        this.o.onAllocated?.(node.name, cidrs);
      } catch (err) {
        if (err instanceof ApiError && (err.statusCode === 409 || err.statusCode === 404)) {
          // Changed or gone since the list: the next pass sees it as it is now.
          this.o.logger.debug({ node: node.name, status: err.statusCode }, 'node changed since the list; next pass');
          return;
        }
        throw err;
      }
    }
  }
}
