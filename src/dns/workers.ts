/**
 * `dns.workers`: more UDP serving threads on the same addresses, through SO_REUSEPORT (the
 * kernel spreads clients over the sockets by their address and port).
 *
 * Each worker is a worker_thread with its own batched native socket per listen address. It
 * answers from the main thread's precomputed zone, shared, not copied: the slab and a hash
 * index in SharedArrayBuffers (zone-index.ts), replaced by a message after every change.
 * What it cannot answer from there (forwarded names, ExternalName, pod records, the
 * before-sync SERVFAIL, malformed packets, AXFR…) it hands to the main thread, which runs the
 * whole chain and sends the answer from its own socket on the same address (the client sees
 * the same source). Workers serve the listen addresses and the kube-dns Service addresses
 * (setExtra, as the main thread's server does); TCP is served by the main thread only.
 * Workers count their queries and send the counts to the main thread every second, so the
 * CoreDNS metrics include them.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { Logger } from '../common/log';
import type { ListenAddr } from './server';
import { NativeUdpSocket } from './udp-native';
import { DnsStats, type StatsCounts } from './metrics';
import { encodeName, encodeResponse, isQuery, nameKey, parseQuery, RCODE, rdata, TYPE } from './wire';

/** `worker.podwire.invalid TXT`: which thread answered ("main" or "worker-N"); for tests and operators. */
export const WORKER_NAME = 'worker.podwire.invalid';
export const WORKER_KEY = nameKey(WORKER_NAME);

export function whoAnswer(q: { id: number; rd: number }, who: string): Buffer {
  const out = encodeResponse(encodeName(WORKER_NAME), TYPE.TXT, RCODE.NOERROR, [{ name: null, type: TYPE.TXT, ttl: 0, data: rdata.txt(who) }], [], [], false);
  out.writeUInt16BE(q.id, 0);
  out[2]! |= q.rd;
  return out;
}
import { ZoneIndex, type ZoneSnapshot } from './zone-index';

interface WorkerInit {
  id: number;
  listen: ListenAddr[];
  /** The kube-dns Service addresses served now (they change with the cluster: `extra` messages). */
  extra: ListenAddr[];
  udpSize: number;
}

/** Worker → main. */
export type WorkerMessage =
  | { kind: 'ready'; id: number }
  | { kind: 'error'; id: number; message: string }
  | { kind: 'handoff'; to: ListenAddr; msg: Uint8Array; addr: Uint8Array; client: string }
  | { kind: 'counts'; counts: StatsCounts };

/** Main → worker. */
type MainMessage = { kind: 'zone'; snapshot: ZoneSnapshot } | { kind: 'extra'; extra: ListenAddr[] } | { kind: 'stop' };

/** A query for the main thread, received on the worker's socket for address `to`. */
export interface HandOff {
  (to: ListenAddr, msg: Buffer, client: string, addr: Buffer): void;
}

export class DnsWorkers {
  private readonly workers: Worker[] = [];
  private snapshot: ZoneSnapshot | undefined;
  private extra: ListenAddr[] = [];

  constructor(
    private readonly count: number,
    private readonly listen: ListenAddr[],
    private readonly udpSize: number,
    private readonly handOff: HandOff,
    private readonly onCounts: (counts: StatsCounts) => void,
    private readonly logger: Logger,
  ) {}

  /** Start the workers; resolves once every one serves (or reports why it cannot). */
  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let id = 1; id <= this.count; id++) {
      const w = new Worker(__filename, { workerData: { id, listen: this.listen, extra: this.extra, udpSize: this.udpSize } satisfies WorkerInit });
      w.unref();
      this.workers.push(w);
      ready.push(
        new Promise<void>((resolve) => {
          w.on('message', (m: WorkerMessage) => {
            if (m.kind === 'ready') resolve();
            else if (m.kind === 'error') {
              this.logger.warn({ worker: m.id, error: m.message }, 'DNS worker cannot serve');
              resolve();
            } else if (m.kind === 'handoff') this.handOff(m.to, Buffer.from(m.msg.buffer, m.msg.byteOffset, m.msg.byteLength), m.client, Buffer.from(m.addr.buffer, m.addr.byteOffset, m.addr.byteLength));
            else if (m.kind === 'counts') this.onCounts(m.counts);
          });
          w.on('error', (err) => {
            this.logger.error({ err, worker: id }, 'DNS worker failed');
            resolve();
          });
        }),
      );
      if (this.snapshot) w.postMessage({ kind: 'zone', snapshot: this.snapshot } satisfies MainMessage);
    }
    await Promise.all(ready);
  }

  /** A new zone snapshot for every worker. */
  publish(snapshot: ZoneSnapshot): void {
    this.snapshot = snapshot;
    for (const w of this.workers) w.postMessage({ kind: 'zone', snapshot } satisfies MainMessage);
  }

  /** Serve exactly these extra addresses too (the kube-dns Service IPs), as DnsServer.setExtra does. */
  setExtra(extra: readonly ListenAddr[]): void {
    this.extra = [...extra];
    for (const w of this.workers) w.postMessage({ kind: 'extra', extra: this.extra } satisfies MainMessage);
  }

  async stop(): Promise<void> {
    // Close the sockets first (the kernel then stops sending them queries), then end the threads.
    for (const w of this.workers) w.postMessage({ kind: 'stop' } satisfies MainMessage);
    await new Promise((r) => setTimeout(r, 50));
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }

  get size(): number {
    return this.workers.length;
  }
}

// ---- the worker thread -----------------------------------------------------------

function runWorker(init: WorkerInit): void {
  const port = parentPort!;
  let index: ZoneIndex | undefined;
  let stats = new DnsStats();
  const sockets = new Map<string, NativeUdpSocket>();
  const extra = new Set<string>();
  const outSlot = Math.min(4096, Math.max(512, init.udpSize));
  const keyOf = (a: ListenAddr): string => `${a.host}|${a.port}`;
  const open = (a: ListenAddr): NativeUdpSocket =>
    new NativeUdpSocket(
      a.host,
      a.port,
      a.host.includes(':'),
      outSlot,
      (msg, client, addr) => {
        const q = index ? parseQuery(msg, 'udp', client) : undefined;
        if (q && isQuery(q) && q.key === WORKER_KEY) return whoAnswer(q, `worker-${init.id}`);
        if (q && isQuery(q) && q.ednsVersion === 0) {
          const r = index!.answer(q, init.udpSize);
          // Templates fit the client's size (fitUdp is the main thread's: larger ones go there).
          const limit = q.ednsSize > 0 ? Math.min(q.ednsSize, init.udpSize) : 512;
          if (r && r.length <= limit) {
            stats.request(q);
            stats.response(r, q, 0);
            return r;
          }
        }
        port.postMessage({ kind: 'handoff', to: a, msg: new Uint8Array(msg), addr: new Uint8Array(addr), client } satisfies WorkerMessage);
        return null;
      },
      () => undefined,
    );
  const setExtra = (want: readonly ListenAddr[]): void => {
    const keys = new Set(want.map(keyOf));
    for (const k of extra) {
      if (keys.has(k)) continue;
      sockets.get(k)?.close();
      sockets.delete(k);
      extra.delete(k);
    }
    for (const a of want) {
      const k = keyOf(a);
      if (sockets.has(k)) continue;
      try {
        sockets.set(k, open(a));
        extra.add(k);
      } catch (err) {
        // The main thread serves this address anyway; only this thread's share is missing.
        port.postMessage({ kind: 'error', id: init.id, message: `${a.host}:${a.port}: ${err instanceof Error ? err.message : String(err)}` } satisfies WorkerMessage);
      }
    }
  };
  port.on('message', (m: MainMessage) => {
    if (m.kind === 'zone') index = new ZoneIndex(m.snapshot);
    else if (m.kind === 'extra') setExtra(m.extra);
    else if (m.kind === 'stop') for (const s of sockets.values()) s.close();
  });
  try {
    for (const a of init.listen) sockets.set(keyOf(a), open(a));
  } catch (err) {
    for (const s of sockets.values()) s.close();
    port.postMessage({ kind: 'error', id: init.id, message: err instanceof Error ? err.message : String(err) } satisfies WorkerMessage);
    return;
  }
  setExtra(init.extra);
  setInterval(() => {
    if (stats.totalRequests === 0) return;
    port.postMessage({ kind: 'counts', counts: stats.counts() } satisfies WorkerMessage);
    stats = new DnsStats();
  }, 1000);
  port.postMessage({ kind: 'ready', id: init.id } satisfies WorkerMessage);
}

if (!isMainThread && (workerData as WorkerInit | undefined)?.listen) runWorker(workerData as WorkerInit);
