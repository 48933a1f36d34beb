/**
 * `dns.workers`: more serving threads on the same addresses, UDP and TCP, through SO_REUSEPORT
 * (the kernel spreads UDP clients over the sockets by their address and port, and TCP
 * connections over the listeners the same way).
 *
 * Each worker is a worker_thread with its own batched native UDP socket and its own TCP
 * listener (Node's net, `reusePort`) per listen address. It answers from the main thread's
 * precomputed zone, shared, not copied: the slab and a hash
 * index in SharedArrayBuffers (zone-index.ts), replaced by a message after every change.
 * What it cannot answer from there (forwarded names, ExternalName, pod records, the
 * before-sync SERVFAIL, malformed packets, AXFR…) it hands to the main thread, which runs the
 * whole chain and sends the answer from its own socket on the same address (the client sees
 * the same source). Over TCP the worker keeps the connection: it posts the message to the main
 * thread, which answers it through its chain and posts the answer back, and the worker writes
 * it on the connection it came from (pipelined: the connection's other messages are answered
 * meanwhile). Framing, idle timeout and limits are the main thread's own (tcp.ts).
 * Workers serve the listen addresses and the kube-dns Service addresses (setExtra, as the
 * main thread's server does). The socket keeper (keeper.ts) holds the main thread's sockets
 * only: after a crash the kernel sends the workers' share to the kept ones (same group).
 * Workers count their queries and send the counts to the main thread every second, so the
 * CoreDNS metrics include them.
 */
import type net from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { Logger } from '../common/log';
import { DnsStats, type StatsCounts } from './metrics';
import type { ListenAddr } from './server';
import { DnsTcpConnections, listenTcp } from './tcp';
import { NativeUdpSocket } from './udp-native';
import { ZoneIndex, type ZoneSnapshot } from './zone-index';
import { encodeName, encodeResponse, isQuery, nameKey, parseQuery, type Query, RCODE, rdata, TYPE } from './wire';

/** `worker.podwire.invalid TXT`: which thread answered ("main" or "worker-N"); for tests and operators. */
export const WORKER_NAME = 'worker.podwire.invalid';
export const WORKER_KEY = nameKey(WORKER_NAME);

export function whoAnswer(q: { id: number; rd: number }, who: string): Buffer {
  const out = encodeResponse(encodeName(WORKER_NAME), TYPE.TXT, RCODE.NOERROR, [{ name: null, type: TYPE.TXT, ttl: 0, data: rdata.txt(who) }], [], [], false);
  out.writeUInt16BE(q.id, 0);
  out[2]! |= q.rd;
  return out;
}

/**
 * What a worker answers itself from the shared zone: the answer, or null when the main thread
 * must (see the module doc). Over UDP only answers that fit the client's size (the main thread
 * truncates the others); AXFR/IXFR go to the main thread, which refuses them.
 */
export function workerAnswer(index: ZoneIndex | undefined, q: Query, who: string, udpSize: number): Buffer | null {
  if (q.key === WORKER_KEY) return whoAnswer(q, who);
  if (!index || q.ednsVersion !== 0 || q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR) return null;
  const r = index.answer(q, udpSize);
  if (!r) return null;
  if (q.transport === 'tcp') return r.length <= 0xffff ? r : null;
  const limit = q.ednsSize > 0 ? Math.min(q.ednsSize, udpSize) : 512;
  return r.length <= limit ? r : null;
}

interface WorkerInit {
  id: number;
  listen: ListenAddr[];
  /** The kube-dns Service addresses served now (they change with the cluster: `extra` messages). */
  extra: ListenAddr[];
  udpSize: number;
  tcpIdleMs: number;
}

/** Worker → main. */
export type WorkerMessage =
  | { kind: 'ready'; id: number }
  | { kind: 'error'; id: number; message: string }
  | { kind: 'handoff'; to: ListenAddr; msg: Uint8Array; addr: Uint8Array; client: string }
  /** A TCP message for the main thread; its answer comes back as `tcp-answer` with the same seq. */
  | { kind: 'tcp'; seq: number; msg: Uint8Array; client: string }
  | { kind: 'counts'; counts: StatsCounts }
  | { kind: 'stopped'; id: number };

/** Main → worker. */
type MainMessage =
  | { kind: 'zone'; snapshot: ZoneSnapshot }
  | { kind: 'extra'; extra: ListenAddr[] }
  | { kind: 'tcp-answer'; seq: number; reply: Uint8Array | null }
  | { kind: 'stop' };

/** A query for the main thread, received on the worker's socket for address `to`. */
export interface HandOff {
  (to: ListenAddr, msg: Buffer, client: string, addr: Buffer): void;
}

export interface DnsWorkersOptions {
  /** Worker threads (besides the main thread). */
  count: number;
  listen: ListenAddr[];
  udpSize: number;
  /** The main thread's TCP idle timeout, used by the workers' connections too. */
  tcpIdleMs: number;
  /** A UDP query for the main thread, which answers from its own socket. */
  handOff: HandOff;
  /** A TCP message for the main thread: its answer (null: none), which the worker writes on the connection. */
  answerTcp: (msg: Buffer, client: string) => Buffer | null | Promise<Buffer | null>;
  onCounts: (counts: StatsCounts) => void;
  logger: Logger;
}

/** How long a stopping worker waits for the answers still pending on its TCP connections. */
const STOP_SETTLE_MS = 1000;

export class DnsWorkers {
  private readonly workers: Worker[] = [];
  private readonly stopped = new Set<Worker>();
  private snapshot: ZoneSnapshot | undefined;
  private extra: ListenAddr[] = [];

  constructor(private readonly o: DnsWorkersOptions) {}

  /** Answer a worker's TCP message through the main thread's chain; every seq gets an answer (maybe null). */
  private answerTcp(w: Worker, seq: number, msg: Buffer, client: string): void {
    const post = (reply: Buffer | null): void => w.postMessage({ kind: 'tcp-answer', seq, reply: reply ? new Uint8Array(reply) : null } satisfies MainMessage);
    let r: Buffer | null | Promise<Buffer | null>;
    try {
      r = this.o.answerTcp(msg, client);
    } catch (err) {
      this.o.logger.error({ err }, 'DNS handler failed');
      post(null);
      return;
    }
    if (r === null || Buffer.isBuffer(r)) post(r);
    else
      r.then(post, (err: unknown) => {
        this.o.logger.error({ err }, 'DNS handler failed');
        post(null);
      });
  }

  /** Start the workers; resolves once every one serves (or reports why it cannot). */
  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let id = 1; id <= this.o.count; id++) {
      const w = new Worker(__filename, { workerData: { id, listen: this.o.listen, extra: this.extra, udpSize: this.o.udpSize, tcpIdleMs: this.o.tcpIdleMs } satisfies WorkerInit });
      w.unref();
      this.workers.push(w);
      ready.push(
        new Promise<void>((resolve) => {
          w.on('message', (m: WorkerMessage) => {
            if (m.kind === 'ready') resolve();
            else if (m.kind === 'error') {
              this.o.logger.warn({ worker: m.id, error: m.message }, 'DNS worker cannot serve');
              resolve();
            } else if (m.kind === 'handoff') this.o.handOff(m.to, Buffer.from(m.msg.buffer, m.msg.byteOffset, m.msg.byteLength), m.client, Buffer.from(m.addr.buffer, m.addr.byteOffset, m.addr.byteLength));
            else if (m.kind === 'tcp') this.answerTcp(w, m.seq, Buffer.from(m.msg.buffer, m.msg.byteOffset, m.msg.byteLength), m.client);
            else if (m.kind === 'counts') this.o.onCounts(m.counts);
            else if (m.kind === 'stopped') this.stopped.add(w);
          });
          w.on('error', (err) => {
            this.o.logger.error({ err, worker: id }, 'DNS worker failed');
            resolve();
          });
          // A thread that died has nothing left to finish: stop() does not wait for it.
          w.on('exit', () => this.stopped.add(w));
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
    // Close the sockets first (the kernel then stops sending them queries), let the TCP answers
    // still pending (handed to us) reach their connections, then end the threads.
    for (const w of this.workers) w.postMessage({ kind: 'stop' } satisfies MainMessage);
    const end = Date.now() + STOP_SETTLE_MS + 500;
    do await new Promise((r) => setTimeout(r, 20));
    while (this.workers.some((w) => !this.stopped.has(w)) && Date.now() < end);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.stopped.clear();
    this.workers.length = 0;
  }

  get size(): number {
    return this.workers.length;
  }
}

// ---- the worker thread -----------------------------------------------------------

interface WorkerSockets {
  udp: NativeUdpSocket;
  tcp: net.Server;
}

async function runWorker(init: WorkerInit): Promise<void> {
  const port = parentPort!;
  const who = `worker-${init.id}`;
  let index: ZoneIndex | undefined;
  let stats = new DnsStats();
  let stopping = false;
  const sockets = new Map<string, WorkerSockets>();
  const extra = new Set<string>();
  const outSlot = Math.min(4096, Math.max(512, init.udpSize));
  const keyOf = (a: ListenAddr): string => `${a.host}|${a.port}`;
  const local = (msg: Buffer, transport: 'udp' | 'tcp', client: string): Buffer | null => {
    const q = parseQuery(msg, transport, client);
    if (!isQuery(q)) return null;
    const r = workerAnswer(index, q, who, init.udpSize);
    if (r && q.key !== WORKER_KEY) {
      stats.request(q);
      stats.response(r, q, 0);
    }
    return r;
  };

  // TCP: what the zone answers is written at once; the rest waits for the main thread's answer.
  let seq = 0;
  const waiting = new Map<number, (reply: Buffer | null) => void>();
  const tcp = new DnsTcpConnections(
    init.tcpIdleMs,
    (msg, client) => {
      const r = local(msg, 'tcp', client);
      if (r) return r;
      const n = ++seq;
      port.postMessage({ kind: 'tcp', seq: n, msg: new Uint8Array(msg), client } satisfies WorkerMessage);
      return new Promise<Buffer | null>((resolve) => waiting.set(n, resolve));
    },
    () => undefined, // the answer functions do not reject
  );

  const open = async (a: ListenAddr): Promise<WorkerSockets> => {
    const udp = new NativeUdpSocket(
      a.host,
      a.port,
      a.host.includes(':'),
      outSlot,
      (msg, client, addr) => {
        const r = local(msg, 'udp', client);
        if (r) return r;
        port.postMessage({ kind: 'handoff', to: a, msg: new Uint8Array(msg), addr: new Uint8Array(addr), client } satisfies WorkerMessage);
        return null;
      },
      () => undefined,
    );
    const server = tcp.createServer();
    try {
      await listenTcp(server, a);
    } catch (err) {
      udp.close();
      throw err;
    }
    // Errors after listening (none expected) must not end the thread.
    server.on('error', () => undefined);
    return { udp, tcp: server };
  };
  const closeSockets = (s: WorkerSockets): void => {
    s.udp.close();
    s.tcp.close();
  };
  const report = (a: ListenAddr | undefined, err: unknown): void => {
    const text = err instanceof Error ? err.message : String(err);
    port.postMessage({ kind: 'error', id: init.id, message: a ? `${a.host}:${a.port}: ${text}` : text } satisfies WorkerMessage);
  };

  // Extra addresses change one message at a time, in order (each change waits for the previous one).
  let extraChain = Promise.resolve();
  const setExtra = async (want: readonly ListenAddr[]): Promise<void> => {
    const keys = new Set(want.map(keyOf));
    for (const k of extra) {
      if (keys.has(k)) continue;
      const s = sockets.get(k);
      if (s) closeSockets(s);
      sockets.delete(k);
      extra.delete(k);
    }
    for (const a of want) {
      const k = keyOf(a);
      if (sockets.has(k) || stopping) continue;
      try {
        sockets.set(k, await open(a));
        extra.add(k);
      } catch (err) {
        // The main thread serves this address anyway; only this thread's share is missing.
        report(a, err);
      }
    }
  };
  const stop = async (): Promise<void> => {
    stopping = true;
    await extraChain;
    for (const s of sockets.values()) closeSockets(s);
    sockets.clear();
    // Queries already accepted get their answers (the main thread still answers until we are ended).
    await tcp.settle(STOP_SETTLE_MS);
    tcp.destroyAll();
    port.postMessage({ kind: 'stopped', id: init.id } satisfies WorkerMessage);
  };
  port.on('message', (m: MainMessage) => {
    if (m.kind === 'zone') index = new ZoneIndex(m.snapshot);
    else if (m.kind === 'extra') extraChain = extraChain.then(() => setExtra(m.extra));
    else if (m.kind === 'tcp-answer') {
      const done = waiting.get(m.seq);
      waiting.delete(m.seq);
      done?.(m.reply ? Buffer.from(m.reply.buffer, m.reply.byteOffset, m.reply.byteLength) : null);
    } else if (m.kind === 'stop') void stop();
  });
  // The listen addresses first, then the extra ones; `extra` messages received meanwhile queue behind.
  let served = true;
  extraChain = (async () => {
    try {
      for (const a of init.listen) sockets.set(keyOf(a), await open(a));
    } catch (err) {
      for (const s of sockets.values()) closeSockets(s);
      sockets.clear();
      stopping = true;
      served = false;
      report(undefined, err);
      return;
    }
    await setExtra(init.extra);
  })();
  await extraChain;
  if (!served) return;
  setInterval(() => {
    if (stats.totalRequests === 0) return;
    port.postMessage({ kind: 'counts', counts: stats.counts() } satisfies WorkerMessage);
    stats = new DnsStats();
  }, 1000);
  port.postMessage({ kind: 'ready', id: init.id } satisfies WorkerMessage);
}

if (!isMainThread && (workerData as WorkerInit | undefined)?.listen) void runWorker(workerData as WorkerInit);
