/**
 * In-memory IpvsKernel with the kernel's answers: EEXIST on adding what exists, ESRCH for
 * a missing service and ENOENT for a missing dest (as ip_vs_ctl.c answers), EINVAL on what
 * the codec refuses. Deleting a service deletes its dests.
 * `unavailable` makes every call fail like a kernel without ip_vs.
 */
import { KernelError } from '../../common/errors';
import { IpAddress } from '../../common/ip';
import { E } from '../errno';
import { encodeChange, entryText, ipvsUnavailableMessage, type IpvsEntry, type IpvsKernel } from '../ipvs/ipvs';
import { sameServiceKey, serviceKey, type IpvsDest, type IpvsService, type IpvsServiceKey } from '../ipvs/codec';
import type { BatchOutcome, BatchResult, Change } from '../types';

interface SvcState {
  service: IpvsService;
  dests: IpvsDest[];
}

export class FakeIpvs implements IpvsKernel {
  private services: SvcState[] = [];
  /** Every change given to apply(), in order (for assertions). */
  readonly calls: Change<IpvsEntry>[] = [];
  unavailable = false;
  closed = false;

  private check(): void {
    if (this.unavailable) throw new KernelError('ipvs', ipvsUnavailableMessage('', 'CTRL_CMD_GETFAMILY: ENOENT (no such file or directory)'), { errno: E.ENOENT });
  }

  private find(key: IpvsServiceKey): SvcState | undefined {
    return this.services.find((s) => sameServiceKey(s.service, key));
  }

  async listServices(): Promise<IpvsService[]> {
    this.check();
    return this.services.map((s) => structuredClone(s.service));
  }

  async listDests(service: IpvsServiceKey): Promise<IpvsDest[]> {
    this.check();
    const s = this.find(service);
    if (!s) return []; // the kernel answers an empty dump
    return s.dests.map((d) => structuredClone(d));
  }

  async apply(changes: Change<IpvsEntry>[]): Promise<BatchResult<IpvsEntry>> {
    this.check();
    const failed: BatchOutcome<IpvsEntry>[] = [];
    changes.forEach((c, index) => {
      this.calls.push(c);
      const errno = this.one(c);
      if (errno) failed.push({ index, change: c, errno, message: `${c.op} ${entryText(c.entry)}: errno ${errno}` });
    });
    return { applied: changes.length - failed.length, failed };
  }

  private one(c: Change<IpvsEntry>): number {
    try {
      encodeChange(1, c); // the same validation as the real codec
    } catch {
      return E.EINVAL;
    }
    const e = c.entry;
    if (e.kind === 'service') {
      const cur = this.find(e.service);
      const svc = { ...structuredClone(e.service), ...serviceKey(e.service) } as IpvsService;
      svc.persistent = svc.persistent ?? false;
      svc.flags = svc.flags ?? 0;
      svc.timeout = svc.timeout ?? 0;
      svc.netmask = svc.netmask ?? (svc.family === 4 ? '255.255.255.255' : 128);
      if (c.op === 'add') {
        if (cur) return E.EEXIST;
        this.services.push({ service: svc, dests: [] });
      } else if (c.op === 'replace') {
        if (!cur) return E.ESRCH;
        cur.service = svc;
      } else {
        if (!cur) return E.ESRCH;
        this.services = this.services.filter((s) => s !== cur);
      }
      return 0;
    }
    const cur = this.find(e.service);
    if (!cur) return E.ESRCH;
    const addr = IpAddress.parse(e.dest.address).toString();
    const i = cur.dests.findIndex((d) => d.address === addr && d.port === e.dest.port);
    const dest: IpvsDest = {
      address: addr,
      port: e.dest.port,
      forward: e.dest.forward ?? 'masq',
      weight: e.dest.weight,
      upperThreshold: e.dest.upperThreshold ?? 0,
      lowerThreshold: e.dest.lowerThreshold ?? 0,
      activeConns: 0,
      inactiveConns: 0,
      persistConns: 0,
    };
    if (e.dest.family !== undefined && e.dest.family !== e.service.family) dest.family = e.dest.family;
    if (c.op === 'add') {
      if (i >= 0) return E.EEXIST;
      cur.dests.push(dest);
    } else if (c.op === 'replace') {
      if (i < 0) return E.ENOENT;
      dest.activeConns = cur.dests[i]!.activeConns;
      dest.inactiveConns = cur.dests[i]!.inactiveConns;
      cur.dests[i] = dest;
    } else {
      if (i < 0) return E.ENOENT;
      cur.dests.splice(i, 1);
    }
    return 0;
  }

  /** Test hook: the connection counts a dump reports for one real server (the kernel's ActiveConn/InActConn). */
  setConns(service: IpvsServiceKey, address: string, port: number, active: number, inactive = 0): void {
    const d = this.find(service)?.dests.find((x) => x.address === IpAddress.parse(address).toString() && x.port === port);
    if (!d) throw new Error(`no dest ${address}:${port}`);
    d.activeConns = active;
    d.inactiveConns = inactive;
  }

  async flush(): Promise<void> {
    this.check();
    this.services = [];
  }

  close(): void {
    this.closed = true;
  }
}
