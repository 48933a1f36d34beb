/**
 * Test clients run inside a pod namespace (bounded in count and time):
 *
 *   node load-client.js loop '{"server":"169.254.20.10","names":["a.b.svc.cluster.local"],"qps":200,"durationMs":10000,"tries":3,"timeoutMs":1000}'
 *     a resolver-like loop: each query is retried like dig (+tries) until answered; prints one
 *     JSON line {sent, answered, failed, firstTryLost, rcodes}. A query fails when every try
 *     timed out or the answer is not NOERROR with at least one record.
 *
 *   node load-client.js fuzz '{"server":"169.254.20.10","count":100000,"seed":7,"valid":"web.prod.svc.cluster.local"}'
 *     random and mutated packets over UDP (plus garbage TCP streams), paced; prints
 *     {sent, responses, tcpConnections}.
 *
 *   node load-client.js tcp '{"server":"169.254.20.10","connections":16,"queries":[["web.prod.svc.cluster.local","A"]],"timeoutMs":5000,"waitClose":true}'
 *     pipelined DNS over TCP: `connections` connections at once, on each all the queries in
 *     one write, the answers collected by ID (in whatever order they come); with `waitClose`
 *     the connection is then left idle until the server closes it (or `timeoutMs`). Prints one
 *     JSON line {connections: [{answers: {"<name> <type>": {rcode, data: [...]}} | null,
 *     order: [keys], closedByServer}]} (`answers` null when the connection closed or timed
 *     out before every answer came).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { buildQuery, HEADER_LEN, RCODE_NAMES, readName, skipName, TYPE } from '../../src/dns/wire';

interface LoopArgs {
  server: string;
  port?: number;
  names: string[];
  qps: number;
  durationMs: number;
  tries: number;
  timeoutMs: number;
}

async function loop(a: LoopArgs): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, r));
  const pending = new Map<number, (m: Buffer) => void>();
  s.on('message', (m) => pending.get(m.readUInt16BE(0))?.(m));
  let nextId = 1;
  const stats = { sent: 0, answered: 0, failed: 0, firstTryLost: 0, rcodes: {} as Record<string, number> };
  const one = async (name: string): Promise<void> => {
    for (let attempt = 0; attempt < a.tries; attempt++) {
      const id = nextId++ & 0xffff;
      const reply = await new Promise<Buffer | undefined>((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          resolve(undefined);
        }, a.timeoutMs);
        pending.set(id, (m) => {
          clearTimeout(timer);
          pending.delete(id);
          resolve(m);
        });
        s.send(buildQuery(name, TYPE.A, id), a.port ?? 53, a.server);
      });
      if (!reply) {
        if (attempt === 0) stats.firstTryLost++;
        continue;
      }
      const rcode = reply[3]! & 0x0f;
      stats.rcodes[rcode] = (stats.rcodes[rcode] ?? 0) + 1;
      if (rcode === 0 && reply.readUInt16BE(6) > 0) stats.answered++;
      else stats.failed++;
      return;
    }
    stats.failed++;
  };
  const running: Promise<void>[] = [];
  const start = Date.now();
  const interval = 1000 / a.qps;
  for (let i = 0; Date.now() - start < a.durationMs; i++) {
    const due = start + i * interval;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    stats.sent++;
    running.push(one(a.names[i % a.names.length]!));
  }
  await Promise.all(running);
  s.close();
  process.stdout.write(`${JSON.stringify(stats)}\n`);
}

interface FuzzArgs {
  server: string;
  port?: number;
  count: number;
  seed: number;
  valid: string;
}

async function fuzz(a: FuzzArgs): Promise<void> {
  let seed = a.seed >>> 0 || 1;
  const rnd = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 0x100000000;
  };
  const int = (n: number): number => Math.floor(rnd() * n);
  const bases = [
    buildQuery(a.valid, TYPE.A, 1),
    buildQuery(a.valid, TYPE.SRV, 2, { ednsSize: 4096 }),
    buildQuery('www.example.org', TYPE.AAAA, 3, { ednsSize: 1232 }),
    buildQuery('1.0.96.10.in-addr.arpa', TYPE.PTR, 4),
    buildQuery('10-244-1-1.default.pod.cluster.local', TYPE.A, 5),
  ];
  const packet = (): Buffer => {
    const kind = int(4);
    if (kind === 0) {
      const b = Buffer.allocUnsafe(int(600));
      for (let i = 0; i < b.length; i++) b[i] = int(256);
      return b;
    }
    const b = Buffer.from(bases[int(bases.length)]!);
    if (kind === 3) return b.subarray(0, int(b.length)); // truncated
    const flips = 1 + int(kind === 1 ? 4 : 12);
    for (let i = 0; i < flips; i++) b[int(b.length)] = int(256);
    return b;
  };
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, r));
  let responses = 0;
  s.on('message', () => responses++);
  let sent = 0;
  for (let i = 0; i < a.count; i++) {
    s.send(packet(), a.port ?? 53, a.server);
    sent++;
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 2)); // pace: stay bounded, let the server breathe
  }
  // Garbage over TCP: random bytes, bad lengths, half messages.
  let tcpConnections = 0;
  for (let i = 0; i < 200; i++) {
    await new Promise<void>((resolve) => {
      const c = net.connect({ host: a.server, port: a.port ?? 53 }, () => {
        tcpConnections++;
        const p = packet();
        const frame = Buffer.alloc(2 + p.length);
        frame.writeUInt16BE(int(3) === 0 ? int(0x10000) : p.length);
        p.copy(frame, 2);
        c.end(frame.subarray(0, int(frame.length + 1)));
      });
      c.setTimeout(500, () => c.destroy());
      c.on('error', () => resolve());
      c.on('close', () => resolve());
      c.on('data', () => undefined);
    });
  }
  await new Promise((r) => setTimeout(r, 300));
  s.close();
  process.stdout.write(`${JSON.stringify({ sent, responses, tcpConnections })}\n`);
}

interface TcpArgs {
  server: string;
  port?: number;
  connections: number;
  /** [name, type] pairs, type a TYPE key (A, TXT, AXFR, ...). */
  queries: [string, keyof typeof TYPE][];
  timeoutMs: number;
  waitClose?: boolean;
}

interface TcpAnswer {
  rcode: string;
  /** Answer rdata: A as dotted quad, CNAME as a name, TXT as its text; other types as `type<N>`. */
  data: string[];
}

/** The rcode and answer data of a response (enough for the tests' checks). */
function summarize(m: Buffer): TcpAnswer {
  const data: string[] = [];
  let p = skipName(m, HEADER_LEN) + 4;
  for (let i = 0; i < m.readUInt16BE(6) && p > 4; i++) {
    const ne = skipName(m, p);
    const type = m.readUInt16BE(ne);
    const rdlen = m.readUInt16BE(ne + 8);
    const r = ne + 10;
    if (type === TYPE.A) data.push(`${m[r]}.${m[r + 1]}.${m[r + 2]}.${m[r + 3]}`);
    else if (type === TYPE.CNAME) data.push(`${readName(m, r) ?? '?'}.`);
    else if (type === TYPE.TXT) data.push(m.toString('latin1', r + 1, r + 1 + m[r]!));
    else data.push(`type${type}`);
    p = r + rdlen;
  }
  return { rcode: RCODE_NAMES[m[3]! & 0x0f] ?? String(m[3]! & 0x0f), data };
}

interface TcpResult {
  answers: Record<string, TcpAnswer> | null;
  order: string[];
  closedByServer: boolean;
}

function tcpConnection(a: TcpArgs, first: number): Promise<TcpResult> {
  return new Promise((resolve) => {
    const want = new Map(a.queries.map(([name, type], i) => [(first + i) & 0xffff, `${name} ${type}`]));
    const answers: Record<string, TcpAnswer> = {};
    const order: string[] = [];
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (closedByServer: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      c.destroy();
      resolve({ answers: order.length === want.size ? answers : null, order, closedByServer });
    };
    const timer = setTimeout(() => finish(false), a.timeoutMs);
    const c = net.connect({ host: a.server, port: a.port ?? 53 }, () => {
      const frames = a.queries.map(([name, type], i) => {
        const q = buildQuery(name, TYPE[type], (first + i) & 0xffff);
        const f = Buffer.alloc(2 + q.length);
        f.writeUInt16BE(q.length);
        q.copy(f, 2);
        return f;
      });
      c.write(Buffer.concat(frames)); // pipelined: all of them before any answer
    });
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        const key = want.get(m.readUInt16BE(0));
        if (key === undefined || answers[key]) continue;
        answers[key] = summarize(m);
        order.push(key);
      }
      if (order.length === want.size && !a.waitClose) finish(false);
    });
    c.on('error', () => finish(false));
    c.on('end', () => finish(true));
    c.on('close', () => finish(true));
  });
}

async function tcp(a: TcpArgs): Promise<void> {
  // At once: each connection has its own source port, so the kernel spreads them over the listeners.
  const connections = await Promise.all(Array.from({ length: a.connections }, (_, i) => tcpConnection(a, 1 + i * a.queries.length)));
  process.stdout.write(`${JSON.stringify({ connections })}\n`);
}

const [mode, json] = process.argv.slice(2);
const args = JSON.parse(json ?? '{}') as unknown;
(mode === 'fuzz' ? fuzz(args as FuzzArgs) : mode === 'tcp' ? tcp(args as TcpArgs) : loop(args as LoopArgs)).catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
