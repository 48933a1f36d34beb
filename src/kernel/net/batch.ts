/**
 * Batch application: many route/neighbour/FDB changes in one transport batch, every
 * change attempted and each failure named; and applyLinkConfig (the CNI fast path).
 *
 * The common shapes go through the allocation-light encoders of netlink/fast-encode.ts
 * (IPv4 unicast routes, IPv4 neighbours, VXLAN FDB entries with an IPv4 remote): one
 * template per distinct (op, gateway, device, flags...) built once and kept, and per
 * change only the changing bytes written into one buffer for the whole batch. Anything
 * else (IPv6, route types other than unicast, src/mtu, FDB without a dst) uses the
 * schema codecs in rtnetlink/. Both produce the same messages as the single-change
 * calls (same flags, protocol and scope defaults).
 *
 * Devices are resolved from the context's ifindex cache (no link dump per batch); a
 * name the cache does not know triggers one refresh. If messages that used cached
 * indexes fail with ENODEV (the link was re-created behind our back), the cache is
 * refreshed and just those changes are sent once more.
 */
import { InvalidInputError, NotFoundError, PodwireError } from '../../common/errors';
import { E, describeErrno } from '../errno';
import { FdbEncoder, Ipv4NeighEncoder, Ipv4RouteEncoder, type WriteOp } from '../netlink/fast-encode';
import * as C from '../rtnetlink/constants';
import { encodeNewAddr } from '../rtnetlink/addr';
import { encodeBridgePort, encodeSetLink } from '../rtnetlink/link';
import { encodeDelNeigh, encodeNewNeigh } from '../rtnetlink/neigh';
import { defaultScope, encodeDelRoute, encodeNewRoute, type RouteWire } from '../rtnetlink/route';
import type { AddressEntry, BatchOutcome, BatchResult, Change, FdbEntry, LinkConfigStep, NeighborEntry, Route } from '../types';
import { macBytes, toCidr, validateU32 } from '../validate';
import { listAddresses } from './addresses';
import { toIp, type NetContext } from './context';
import { fdbWire, neighWire } from './neighbours';
import { checkRoute } from './routes';

interface DetailedBatch {
  batchDetailed(messages: readonly Buffer[]): Promise<{ errnos: Int32Array; errors: { index: number; message: string }[] }>;
}

/** One transport batch; the native transport also returns the extended-ACK text per failure. */
async function sendBatch(ctx: NetContext, msgs: Buffer[]): Promise<{ errnos: Int32Array; extack: Map<number, string> }> {
  const detailed = (ctx.transport as Partial<DetailedBatch>).batchDetailed;
  const res = detailed ? await detailed.call(ctx.transport, msgs) : { errnos: await ctx.transport.batch(msgs), errors: [] };
  return { errnos: res.errnos, extack: new Map(res.errors.map((e) => [e.index, e.message])) };
}

// ---- message building ----

/** A fixed-layout message: `stride` bytes written by `write` at an offset of one shared buffer. */
interface FastSlot {
  stride: number;
  length: number;
  write(out: Buffer, offset: number): void;
}

/** Collects generic messages and fast slots, then lays the fast ones out in one buffer. */
class BatchBuilder {
  private readonly items: (Buffer | FastSlot)[] = [];
  private fastBytes = 0;

  push(m: Buffer | FastSlot): void {
    this.items.push(m);
    if (!Buffer.isBuffer(m)) this.fastBytes += m.stride;
  }

  build(): Buffer[] {
    const slab = this.fastBytes > 0 ? Buffer.allocUnsafe(this.fastBytes) : undefined;
    let off = 0;
    return this.items.map((m) => {
      if (Buffer.isBuffer(m)) return m;
      m.write(slab!, off);
      const view = slab!.subarray(off, off + m.length);
      off += m.stride;
      return view;
    });
  }
}

/** Encoder templates by their fixed fields, kept across batches (bounded). */
class EncoderCache<T> {
  private readonly map = new Map<string, T>();
  get(key: string, make: () => T): T {
    let e = this.map.get(key);
    if (!e) {
      if (this.map.size >= 4096) this.map.clear();
      e = make();
      this.map.set(key, e);
    }
    return e;
  }
}

/** Parses `aa:bb:cc:dd:ee:ff` into `out` at `off`; false when it is not a MAC. */
function macInto(mac: unknown, out: Buffer, off: number): boolean {
  if (typeof mac !== 'string' || mac.length !== 17) return false;
  for (let i = 0; i < 6; i++) {
    const hi = hexVal(mac.charCodeAt(3 * i));
    const lo = hexVal(mac.charCodeAt(3 * i + 1));
    if (hi < 0 || lo < 0 || (i < 5 && mac[3 * i + 2] !== ':')) return false;
    out[off + i] = (hi << 4) | lo;
  }
  return true;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

const SCOPE_NUM: Record<NonNullable<Route['scope']>, number> = { universe: C.RT_SCOPE_UNIVERSE, link: C.RT_SCOPE_LINK, host: C.RT_SCOPE_HOST };

// ---- the batch machinery ----

type Resolve = (dev: string) => number;

interface BatchKind<T> {
  name: string;
  /** errno meaning "already gone" for a delete (counts as success). */
  missingOnDelete: number;
  dev(entry: T): string | undefined;
  encode(change: Change<T>, ifindex: Resolve): Buffer | FastSlot;
}

export class BatchApplier {
  private readonly routeEncoders = new EncoderCache<Ipv4RouteEncoder>();
  private readonly neighEncoders = new EncoderCache<Ipv4NeighEncoder>();
  private readonly fdbEncoders = new EncoderCache<FdbEncoder>();
  private lastRoute:
    | { enc: Ipv4RouteEncoder; op: string; gw: bigint | undefined; oif: number | undefined; onlink: boolean; protocol: number; table: number; metric: number | undefined; scope: number; type: number }
    | undefined;
  private readonly mac = Buffer.alloc(6);

  constructor(private readonly ctx: NetContext) {}

  /**
   * Encodes every change (an encoding failure, e.g. an unknown dev, is reported at its
   * index and not sent), sends the rest in one transport batch and names each failure.
   */
  private async run<T>(kind: BatchKind<T>, changes: Change<T>[]): Promise<BatchResult<T>> {
    const cache = this.ctx.linkIndex;
    // One refresh up front if any device is unknown to the cache.
    let refreshed = false;
    for (const c of changes) {
      const dev = kind.dev(c.entry);
      if (dev !== undefined && cache.peek(dev) === undefined) {
        await cache.refresh();
        refreshed = true;
        break;
      }
    }
    const failed: BatchOutcome<T>[] = [];
    let applied = 0;
    let pending = changes.map((_, i) => i);
    for (let attempt = 0; attempt < 2 && pending.length > 0; attempt++) {
      const ifindex: Resolve = (dev) => {
        const i = cache.peek(dev);
        if (i === undefined) throw new NotFoundError('link', dev);
        return i;
      };
      const builder = new BatchBuilder();
      const sentIndex: number[] = [];
      for (const index of pending) {
        const change = changes[index]!;
        try {
          builder.push(kind.encode(change, ifindex));
          sentIndex.push(index);
        } catch (err) {
          const errno = err instanceof NotFoundError ? E.ENODEV : E.EINVAL;
          const message = err instanceof PodwireError ? err.message : String(err);
          failed.push({ index, change, errno, message });
        }
      }
      const { errnos, extack } = await sendBatch(this.ctx, builder.build());
      const retry: number[] = [];
      for (let i = 0; i < sentIndex.length; i++) {
        const errno = Math.abs(errnos[i] ?? 0);
        const index = sentIndex[i]!;
        const change = changes[index]!;
        if (errno === 0 || (change.op === 'delete' && errno === kind.missingOnDelete)) {
          applied++;
          continue;
        }
        if (errno === E.ENODEV && !refreshed && attempt === 0 && kind.dev(change.entry) !== undefined) {
          retry.push(index); // maybe a stale cached ifindex: refresh and send once more
          continue;
        }
        const why = extack.get(i);
        failed.push({ index, change, errno, message: `${kind.name} #${index} ${change.op}: ${describeErrno(errno)}${why ? `: ${why}` : ''}` });
      }
      pending = retry;
      if (retry.length > 0) {
        await cache.refresh();
        refreshed = true;
      }
    }
    failed.sort((a, b) => a.index - b.index);
    return { applied, failed };
  }

  applyRoutes(changes: Change<Route>[]): Promise<BatchResult<Route>> {
    return this.run<Route>(
      {
        name: 'route',
        missingOnDelete: E.ESRCH,
        dev: (r) => r.dev,
        encode: (c, ifindex) => {
          checkRoute(c.entry, 'entry');
          const r = c.entry;
          const oif = r.dev !== undefined ? ifindex(r.dev) : undefined;
          if (r.dst.family === 4 && (r.type === undefined || r.type === 'unicast') && r.src === undefined && r.mtu === undefined) {
            return this.fastRoute(c.op, r, oif);
          }
          const w: RouteWire = { route: r, oif };
          return c.op === 'delete' ? encodeDelRoute(w) : encodeNewRoute(w, c.op);
        },
      },
      changes,
    );
  }

  private fastRoute(op: Change<Route>['op'], r: Route, oif: number | undefined): FastSlot {
    const del = op === 'delete';
    // The same defaults as rtnetlink/route.ts: deletes match any protocol/scope/type unless named.
    const protocol = del ? (r.protocol ?? 0) : (r.protocol ?? C.RTPROT_BOOT);
    const table = r.table ?? C.RT_TABLE_MAIN;
    const scope = del ? (r.scope ? SCOPE_NUM[r.scope] : C.RT_SCOPE_NOWHERE) : defaultScope(r);
    const type = del ? (r.type ? C.RTN_UNICAST : C.RTN_UNSPEC) : C.RTN_UNICAST;
    const onlink = r.onlink === true;
    const gw = r.gateway?.value;
    // A batch usually repeats one shape (same gateway and device): reuse the last template
    // without building a key.
    const last = this.lastRoute;
    let enc: Ipv4RouteEncoder;
    if (last && last.op === op && last.gw === gw && last.oif === oif && last.onlink === onlink && last.protocol === protocol && last.table === table && last.metric === r.metric && last.scope === scope && last.type === type) {
      enc = last.enc;
    } else {
      const key = `${op}|${gw ?? ''}|${oif ?? ''}|${onlink}|${protocol}|${table}|${r.metric ?? ''}|${scope}|${type}`;
      enc = this.routeEncoders.get(key, () => new Ipv4RouteEncoder({ op: op as WriteOp, gateway: r.gateway?.toString(), oif, onlink, protocol, table, metric: r.metric, scope, type }));
      this.lastRoute = { enc, op, gw, oif, onlink, protocol, table, metric: r.metric, scope, type };
    }
    const len = r.dst.prefixLength;
    // The network address without Cidr.network's bigint masking.
    const dst = (Number(r.dst.ip.value) & (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0)) >>> 0;
    return { stride: enc.stride, length: enc.length, write: (out, off) => enc.writeInto(out, off, dst, len) };
  }

  applyNeighbors(changes: Change<NeighborEntry>[]): Promise<BatchResult<NeighborEntry>> {
    return this.run<NeighborEntry>(
      {
        name: 'neighbour',
        missingOnDelete: E.ENOENT,
        dev: (n) => n.dev,
        encode: (c, ifindex) => {
          const index = ifindex(c.entry.dev);
          const ip = toIp(c.entry.ip, 'ip');
          if (ip.family === 4 && macInto(c.entry.mac, this.mac, 0)) {
            const state = c.entry.permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE;
            const enc = this.neighEncoders.get(`${c.op}|${index}|${state}`, () => new Ipv4NeighEncoder({ op: c.op, ifindex: index, state }));
            const mac = c.entry.mac;
            const scratch = this.mac;
            const addr = Number(ip.value);
            // build() runs the writes synchronously, one after another: one scratch MAC buffer serves them all.
            const write = (out: Buffer, off: number): void => {
              macInto(mac, scratch, 0);
              enc.writeInto(out, off, addr, scratch, 0);
            };
            return { stride: enc.stride, length: enc.length, write };
          }
          const w = neighWire(c.entry, index);
          return c.op === 'delete' ? encodeDelNeigh(w) : encodeNewNeigh(w, c.op === 'add' ? 'add' : 'replace');
        },
      },
      changes,
    );
  }

  /** For FDB, `add` appends (another dst for the same MAC), `replace` replaces. */
  applyFdb(changes: Change<FdbEntry>[]): Promise<BatchResult<FdbEntry>> {
    return this.run<FdbEntry>(
      {
        name: 'fdb',
        missingOnDelete: E.ENOENT,
        dev: (f) => f.dev,
        encode: (c, ifindex) => {
          const index = ifindex(c.entry.dev);
          const dst = c.entry.dst !== undefined ? toIp(c.entry.dst, 'dst') : undefined;
          if (dst?.family === 4 && macInto(c.entry.mac, this.mac, 0)) {
            const op: WriteOp = c.op === 'delete' ? 'delete' : c.op === 'add' ? 'append' : 'replace';
            const state = c.entry.permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE;
            const enc = this.fdbEncoders.get(`${op}|${index}|${state}`, () => new FdbEncoder({ op, ifindex: index, state, flags: C.NTF_SELF }));
            const mac = c.entry.mac;
            const scratch = this.mac;
            const addr = Number(dst.value);
            const write = (out: Buffer, off: number): void => {
              macInto(mac, scratch, 0);
              enc.writeInto(out, off, scratch, 0, addr);
            };
            return { stride: enc.stride, length: enc.length, write };
          }
          macBytes(c.entry.mac); // a bad MAC is an InvalidInputError naming the field
          const w = fdbWire(c.entry, index);
          return c.op === 'delete' ? encodeDelNeigh(w) : encodeNewNeigh(w, c.op === 'add' ? 'append' : 'replace');
        },
      },
      changes,
    );
  }

  async applyLinkConfig(steps: LinkConfigStep[]): Promise<BatchResult<LinkConfigStep>> {
    const failed: BatchOutcome<LinkConfigStep>[] = [];
    const msgs: Buffer[] = [];
    const sentIndex: number[] = [];
    steps.forEach((step, index) => {
      try {
        validateU32(step.index, `steps[${index}].index`);
        msgs.push(encodeLinkStep(step, index));
        sentIndex.push(index);
      } catch (err) {
        failed.push({ index, change: { op: 'add', entry: step }, errno: E.EINVAL, message: err instanceof PodwireError ? err.message : String(err) });
      }
    });
    const { errnos, extack } = await sendBatch(this.ctx, msgs);
    let applied = 0;
    let addresses: AddressEntry[] | undefined;
    for (let i = 0; i < sentIndex.length; i++) {
      const index = sentIndex[i]!;
      const step = steps[index]!;
      const errno = Math.abs(errnos[i] ?? 0);
      if (errno === E.EEXIST && step.kind === 'address') {
        // Like addAddress: the exact address being there already is success.
        addresses ??= await listAddresses(this.ctx);
        const c = step.cidr;
        if (addresses.some((a) => a.linkIndex === step.index && a.cidr.ip.equals(c.ip) && a.cidr.prefixLength === c.prefixLength)) {
          applied++;
          continue;
        }
      }
      if (errno === 0) {
        applied++;
        continue;
      }
      const why = extack.get(i);
      failed.push({ index, change: { op: 'add', entry: step }, errno, message: `link config #${index} ${describeLinkStep(step)}${this.ctx.where()}: ${describeErrno(errno)}${why ? `: ${why}` : ''}` });
    }
    failed.sort((a, b) => a.index - b.index);
    return { applied, failed };
  }
}

function encodeLinkStep(step: LinkConfigStep, i: number): Buffer {
  switch (step.kind) {
    case 'up':
      return encodeSetLink({ index: step.index, up: step.up });
    case 'address':
      return encodeNewAddr(step.index, toCidr(step.cidr, `steps[${i}].cidr`), { nodad: step.nodad });
    case 'route': {
      const route = { ...step.route };
      delete route.dev; // leaves through step.index
      checkRoute(route, `steps[${i}].route`);
      return encodeNewRoute({ route, oif: step.index }, 'add');
    }
    case 'bridgePort':
      return encodeBridgePort(step.index, { hairpin: step.hairpin, learning: step.learning });
    default:
      throw new InvalidInputError(`steps[${i}].kind`, (step as { kind: unknown }).kind, 'supported kinds: up, address, route, bridgePort');
  }
}

function describeLinkStep(step: LinkConfigStep): string {
  switch (step.kind) {
    case 'up':
      return `set link #${step.index} ${step.up ? 'up' : 'down'}`;
    case 'address':
      return `add address ${String(step.cidr)} on link #${step.index}`;
    case 'route':
      return `add route ${String(step.route.dst)}${step.route.gateway ? ` via ${String(step.route.gateway)}` : ''} on link #${step.index}`;
    case 'bridgePort':
      return `set bridge port flags on link #${step.index}`;
  }
}
