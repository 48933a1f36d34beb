/**
 * The host-local on-disk layout, kept byte-compatible with containernetworking/plugins
 * `plugins/ipam/host-local/backend/disk`:
 *   <dataDir>/<network>/<ip>                    content `containerID\r\nifname`, O_EXCL create
 *   <dataDir>/<network>/last_reserved_ip.<set>  the last IP reserved in range set <set>
 *   <dataDir>/<network>/lock                    flock(2) target
 * Files are small, so the calls are synchronous: cheaper than a thread-pool round trip.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { IpAddress } from '../../common/ip';
import { errnoCode } from '../../common/errors';
import type { Logger } from '../../common/log';
import { FlockLocker, type FileLocker } from './lock';
import { decodeOwner, encodeOwner, ownerMatches, type IpamStore, type Reservation, type StoreListing, type StoreProblem } from './store';

const LAST_PREFIX = 'last_reserved_ip.';
const defaultLocker = new FlockLocker();

export class DiskIpamStore implements IpamStore {
  readonly dir: string;

  constructor(
    dataDir: string,
    network: string,
    private readonly log?: Logger,
    private readonly locker: FileLocker = defaultLocker,
  ) {
    this.dir = join(dataDir, network);
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
  }

  lock(): Promise<() => void> {
    return this.locker.lock(join(this.dir, 'lock'));
  }

  async reserve(containerId: string, ifname: string, ip: IpAddress, rangeId: string): Promise<boolean> {
    const file = join(this.dir, ip.toString());
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o644);
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') return false;
      throw err;
    }
    try {
      writeSync(fd, encodeOwner(containerId, ifname));
    } catch (err) {
      closeSync(fd);
      unlinkQuiet(file);
      throw err;
    }
    closeSync(fd);
    writeFileSync(join(this.dir, LAST_PREFIX + rangeId), ip.toString(), { mode: 0o644 });
    return true;
  }

  async lastReserved(rangeId: string): Promise<IpAddress | undefined> {
    try {
      return IpAddress.tryParse(readFileSync(join(this.dir, LAST_PREFIX + rangeId), 'utf8').trim());
    } catch {
      return undefined;
    }
  }

  async releaseById(containerId: string, ifname: string): Promise<IpAddress[]> {
    const { reservations } = this.scan(false);
    const out: IpAddress[] = [];
    // Exact (id, ifname) matches first; old id-only files only if there is none, as host-local does.
    const exact = reservations.filter((r) => r.ifname !== undefined && ownerMatches(r, containerId, ifname));
    const chosen = exact.length > 0 ? exact : reservations.filter((r) => r.ifname === undefined && ownerMatches(r, containerId, ifname));
    for (const r of chosen) {
      if (unlinkQuiet(join(this.dir, r.ip.toString()))) out.push(r.ip);
    }
    return out;
  }

  async getById(containerId: string, ifname: string): Promise<IpAddress[]> {
    return this.scan(false)
      .reservations.filter((r) => ownerMatches(r, containerId, ifname))
      .map((r) => r.ip);
  }

  async release(ip: IpAddress): Promise<void> {
    unlinkQuiet(join(this.dir, ip.toString()));
  }

  async list(): Promise<StoreListing> {
    return this.scan(true);
  }

  close(): void {}

  /** Read every reservation; anything unreadable or foreign becomes a problem, never an exception. */
  private scan(report: boolean): StoreListing {
    const reservations: Reservation[] = [];
    const problems: StoreProblem[] = [];
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return { reservations, problems };
      throw err;
    }
    for (const name of names) {
      if (name === 'lock' || name.startsWith(LAST_PREFIX)) continue;
      const ip = IpAddress.tryParse(name);
      if (!ip) {
        problems.push({ file: name, reason: 'not an IP address: foreign file, ignored' });
        continue;
      }
      let text: string;
      try {
        text = readFileSync(join(this.dir, name), 'utf8');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue; // released concurrently
        problems.push({ file: name, reason: `unreadable (${errnoCode(err) ?? 'error'}): kept as reserved` });
        continue;
      }
      const owner = decodeOwner(text);
      if (!owner) {
        problems.push({ file: name, reason: 'content is not "containerID\\r\\nifname": kept as reserved' });
        continue;
      }
      reservations.push({ ip, containerId: owner.containerId, ifname: owner.ifname });
    }
    if (report && this.log) {
      for (const p of problems) this.log.warn({ dir: this.dir, file: p.file }, `ipam store: ${p.reason}`);
    }
    return { reservations, problems };
  }
}

function unlinkQuiet(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}
