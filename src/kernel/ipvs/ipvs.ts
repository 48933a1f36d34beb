/**
 * IpvsKernel over generic netlink: a NETLINK_GENERIC socket opened inside the netns by the
 * native addon (on its netns helper thread), the "IPVS" family id resolved once with
 * CTRL_CMD_GETFAMILY, then dumps through request() and changes through one batched send
 * (one errno per change, never stopping at the first failure, like applyRoutes).
 *
 * IPVS state is per network namespace (the family is netnsok): a service created through
 * a socket opened in netns X exists only in X.
 */
import { KernelError } from '../../common/errors';
import { describeErrno, E } from '../errno';
import { LazyNetlinkSocket } from '../netlink/lazy-socket';
import type { NetlinkTransport } from '../netlink/transport';
import type { BatchOutcome, BatchResult, Change, NetnsRef } from '../types';
import {
  NETLINK_GENERIC,
  decodeDest,
  decodeFamilyId,
  decodeService,
  encodeDelDest,
  encodeDelService,
  encodeFlush,
  encodeGetDests,
  encodeGetFamily,
  encodeGetServices,
  encodeNewDest,
  encodeNewService,
  encodeSetDest,
  encodeSetService,
  serviceKeyText,
  type IpvsDest,
  type IpvsService,
  type IpvsServiceKey,
} from './codec';

/** What one IPVS change is about: a virtual service, or one real server of a service. */
export type IpvsEntry = { kind: 'service'; service: IpvsService } | { kind: 'dest'; service: IpvsServiceKey; dest: IpvsDest };

/**
 * IPVS virtual services and their real servers in one network namespace.
 * Change ops: `add` (IPVS_CMD_NEW_*; EEXIST if present), `replace` (IPVS_CMD_SET_*: edit
 * scheduler/flags/timeout, or a dest's weight/forwarding/thresholds; ENOENT if absent),
 * `delete` (IPVS_CMD_DEL_*; ENOENT if absent; deleting a service deletes its dests).
 * Weight 0 on a dest = graceful termination: no new connections, existing ones continue.
 */
export interface IpvsKernel {
  listServices(): Promise<IpvsService[]>;
  /** [] when the service does not exist (the kernel answers an empty dump, as ipvsadm sees it). */
  listDests(service: IpvsServiceKey): Promise<IpvsDest[]>;
  /** Applied in order, in as few datagrams as possible; every change gets its own outcome. */
  apply(changes: Change<IpvsEntry>[]): Promise<BatchResult<IpvsEntry>>;
  /** Removes every virtual service of the netns. */
  flush(): Promise<void>;
  close(): void;
}

/** The message a missing ip_vs module produces, naming the module and the alternative. */
export function ipvsUnavailableMessage(where: string, detail: string): string {
  return (
    `IPVS is not available${where}: the kernel has no generic-netlink family "IPVS" (${detail}). ` +
    'Load the ip_vs kernel module (`modprobe ip_vs`, plus ip_vs_rr/ip_vs_wrr/... for the schedulers you use; ' +
    'on a managed host add it to /etc/modules-load.d/), or run the proxy in nftables mode (proxy mode: nftables).'
  );
}

export function entryText(e: IpvsEntry): string {
  return e.kind === 'service' ? `service ${serviceKeyText(e.service)}` : `dest ${e.dest.address}:${e.dest.port} of ${serviceKeyText(e.service)}`;
}

export class NetlinkIpvs implements IpvsKernel {
  private familyId: Promise<number> | undefined;

  private readonly sock: LazyNetlinkSocket;

  constructor(
    readonly netns: NetnsRef | undefined,
    transport?: NetlinkTransport,
  ) {
    this.sock = new LazyNetlinkSocket('ipvs', netns, NETLINK_GENERIC, transport);
  }

  private where(): string {
    return this.sock.where();
  }

  private socket(): Promise<NetlinkTransport> {
    return this.sock.get();
  }

  /** The IPVS family id (cached). KernelError with the module hint when ip_vs is not loaded. */
  resolveFamily(): Promise<number> {
    this.familyId ??= (async () => {
      const t = await this.socket();
      let replies: Buffer[];
      try {
        replies = await t.request(encodeGetFamily());
      } catch (err) {
        const errno = err instanceof KernelError ? err.errno : undefined;
        const detail = errno !== undefined ? describeErrno(errno) : String(err);
        throw new KernelError('ipvs', ipvsUnavailableMessage(this.where(), `CTRL_CMD_GETFAMILY: ${detail}`), { errno, cause: err });
      }
      for (const m of replies) {
        const id = decodeFamilyId(m);
        if (id !== undefined) return id;
      }
      throw new KernelError('ipvs', ipvsUnavailableMessage(this.where(), 'no family id in the controller reply'), { errno: E.ENOENT });
    })().catch((err: unknown) => {
      this.familyId = undefined;
      throw err;
    });
    return this.familyId;
  }

  async listServices(): Promise<IpvsService[]> {
    const id = await this.resolveFamily();
    const t = await this.socket();
    let replies: Buffer[];
    try {
      replies = await t.request(encodeGetServices(id));
    } catch (err) {
      if (err instanceof KernelError) throw new KernelError(`list ipvs services${this.where()}`, err.message, { errno: err.errno, cause: err });
      throw err;
    }
    const out: IpvsService[] = [];
    for (const m of replies) {
      const s = decodeService(m, id);
      if (s) out.push(s);
    }
    return out;
  }

  async listDests(service: IpvsServiceKey): Promise<IpvsDest[]> {
    const id = await this.resolveFamily();
    const t = await this.socket();
    let replies: Buffer[];
    try {
      replies = await t.request(encodeGetDests(id, service));
    } catch (err) {
      if (err instanceof KernelError) throw new KernelError(`list ipvs dests of ${serviceKeyText(service)}${this.where()}`, err.message, { errno: err.errno, cause: err });
      throw err;
    }
    const out: IpvsDest[] = [];
    for (const m of replies) {
      const d = decodeDest(m, id, service.family);
      if (d) out.push(d);
    }
    return out;
  }

  async apply(changes: Change<IpvsEntry>[]): Promise<BatchResult<IpvsEntry>> {
    if (changes.length === 0) return { applied: 0, failed: [] };
    const id = await this.resolveFamily();
    const failed: BatchOutcome<IpvsEntry>[] = [];
    const msgs: Buffer[] = [];
    const sent: number[] = [];
    changes.forEach((c, index) => {
      try {
        msgs.push(encodeChange(id, c));
        sent.push(index);
      } catch (err) {
        failed.push({ index, change: c, errno: E.EINVAL, message: `${c.op} ${entryText(c.entry)}: ${err instanceof Error ? err.message : String(err)}` });
      }
    });
    if (msgs.length) {
      const t = await this.socket();
      const detailed = 'batchDetailed' in t ? await (t as { batchDetailed(m: readonly Buffer[]): Promise<{ errnos: Int32Array; errors: { index: number; message: string }[] }> }).batchDetailed(msgs) : { errnos: await t.batch(msgs), errors: [] };
      const extack = new Map(detailed.errors.map((e) => [e.index, e.message]));
      for (let i = 0; i < sent.length; i++) {
        const errno = Math.abs(detailed.errnos[i]!);
        if (errno === 0) continue;
        const index = sent[i]!;
        const c = changes[index]!;
        const ext = extack.get(i);
        failed.push({ index, change: c, errno, message: `${c.op} ${entryText(c.entry)}: ${describeErrno(errno)}${ext ? `: ${ext}` : ''}` });
      }
    }
    failed.sort((a, b) => a.index - b.index);
    return { applied: changes.length - failed.length, failed };
  }

  async flush(): Promise<void> {
    const id = await this.resolveFamily();
    const t = await this.socket();
    const [errno] = await t.batch([encodeFlush(id)]);
    if (errno) throw new KernelError(`flush ipvs${this.where()}`, describeErrno(Math.abs(errno)), { errno: Math.abs(errno) });
  }

  close(): void {
    this.sock.close();
  }
}

export function encodeChange(familyId: number, c: Change<IpvsEntry>): Buffer {
  const e = c.entry;
  if (e.kind === 'service') {
    if (c.op === 'add') return encodeNewService(familyId, e.service);
    if (c.op === 'replace') return encodeSetService(familyId, e.service);
    if (c.op === 'delete') return encodeDelService(familyId, e.service);
  } else if (e.kind === 'dest') {
    if (c.op === 'add') return encodeNewDest(familyId, e.service, e.dest);
    if (c.op === 'replace') return encodeSetDest(familyId, e.service, e.dest);
    if (c.op === 'delete') return encodeDelDest(familyId, e.service, e.dest);
  }
  throw new RangeError(`unknown change ${String(c.op)} ${String((e as { kind?: unknown }).kind)}`);
}

/**
 * Start-up check: is IPVS usable in `netns`? Resolves the family (the kernel loads nothing
 * on its own for genetlink here); rejects with the module-naming message otherwise.
 */
export async function checkIpvsAvailable(netns?: NetnsRef): Promise<void> {
  const k = new NetlinkIpvs(netns);
  try {
    await k.resolveFamily();
  } finally {
    k.close();
  }
}
