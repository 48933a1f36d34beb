/**
 * DNS worker threads over TCP (workers.ts, tcp.ts): a real worker thread on 127.0.0.1 and no
 * main-thread listener, so every connection goes to the worker. It answers the cluster zone
 * itself (byte for byte what the main thread's zone answers), pipelines (a message handed to
 * the main thread does not hold up the ones after it), writes the main thread's answers back
 * on the connection, applies the main thread's limits (idle timeout, a length below a header
 * closes the connection), and a stopping worker still delivers the answers it waits for.
 */
import net from 'node:net';
import t from 'tap';
import { silentLogger } from '../common/log';
import { loadAddon } from '../kernel/native';
import { FakeController } from './controller';
import { freePort, service } from './testing';
import { DnsWorkers, workerAnswer } from './workers';
import { bareResponse, buildQuery, isQuery, parseQuery, type Query, RCODE, rcodeOf, TYPE } from './wire';
import { ClusterZone } from './zone';
import { ZoneIndex } from './zone-index';

let addon = true;
try {
  loadAddon();
} catch {
  addon = false;
}

function zone(): ClusterZone {
  const fc = new FakeController();
  fc.ns.add('prod');
  fc.svc.set('prod/web', service('prod', 'web', { clusterIPs: ['10.96.1.10'], ports: [{ name: 'http', port: 80 }] }));
  const z = new ClusterZone(fc, { zones: ['cluster.local'], ttl: 5, podRecords: 'disabled' });
  z.rebuild();
  return z;
}

const parse = (msg: Buffer, transport: 'udp' | 'tcp'): Query => {
  const p = parseQuery(msg, transport, '127.0.0.1');
  if (!isQuery(p)) throw new Error('no parse');
  return p;
};

const frame = (msg: Buffer): Buffer => Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]);

/** A TCP client that collects the answers (by ID) of the frames it reads. */
class Client {
  readonly answers = new Map<number, Buffer>();
  readonly order: number[] = [];
  closed = false;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
        const m = this.buf.subarray(2, 2 + this.buf.readUInt16BE(0));
        this.buf = this.buf.subarray(2 + m.length);
        this.answers.set(m.readUInt16BE(0), Buffer.from(m));
        this.order.push(m.readUInt16BE(0));
      }
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }
  static connect(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  /** Until `cond` holds or the connection closed (the test's own timeout bounds it). */
  async until(cond: () => boolean): Promise<void> {
    while (!cond() && !this.closed) await new Promise<void>((r) => this.waiters.push(r));
  }
}

t.test('workerAnswer: AXFR/IXFR, other zones and no zone yet go to the main thread', async (t) => {
  const idx = new ZoneIndex(zone().snapshot(1));
  const local = (name: string, type: number, transport: 'udp' | 'tcp') => workerAnswer(idx, parse(buildQuery(name, type, 7), transport), 'worker-1', 1232);
  t.ok(local('web.prod.svc.cluster.local', TYPE.A, 'tcp'), 'a hit over TCP');
  t.ok(local('nope.prod.svc.cluster.local', TYPE.A, 'tcp'), 'NXDOMAIN over TCP');
  t.equal(local('cluster.local', TYPE.AXFR, 'tcp'), null, 'AXFR over TCP: main thread (it refuses)');
  t.equal(local('cluster.local', TYPE.IXFR, 'udp'), null, 'IXFR over UDP: main thread');
  t.equal(local('example.org', TYPE.A, 'tcp'), null, 'another zone: main thread');
  t.equal(workerAnswer(undefined, parse(buildQuery('web.prod.svc.cluster.local', TYPE.A, 7), 'tcp'), 'worker-1', 1232), null, 'no zone yet: main thread');
});

t.test('a worker thread serves TCP: zone answers, pipelining, hand-off to the main thread, limits', { skip: addon ? false : 'native addon not built' }, async (t) => {
  const port = await freePort();
  const z = zone();
  const handed: { msg: Buffer; resolve: (r: Buffer | null) => void }[] = [];
  let handedWake: (() => void) | undefined;
  const workers = new DnsWorkers({
    count: 1,
    listen: [{ host: '127.0.0.1', port }],
    udpSize: 1232,
    tcpIdleMs: 300,
    handOff: () => undefined,
    // The main thread's chain, held back until the test lets it answer.
    answerTcp: (msg) =>
      new Promise<Buffer | null>((resolve) => {
        handed.push({ msg: Buffer.from(msg), resolve });
        handedWake?.();
      }),
    onCounts: () => undefined,
    logger: silentLogger,
  });
  workers.publish(z.snapshot(1));
  await workers.start();
  let stopped = false;
  t.teardown(() => (stopped ? undefined : workers.stop()));
  const handedCount = async (n: number): Promise<void> => {
    while (handed.length < n) await new Promise<void>((r) => (handedWake = r));
  };

  // One write, five pipelined queries: two need the main thread, three the worker answers.
  const c = await Client.connect(port);
  const qs = [
    buildQuery('ext.example.org', TYPE.A, 1),
    buildQuery('web.prod.svc.cluster.local', TYPE.A, 2),
    buildQuery('cluster.local', TYPE.AXFR, 3),
    buildQuery('nope.prod.svc.cluster.local', TYPE.A, 4, { ednsSize: 4096 }),
    buildQuery('worker.podwire.invalid', TYPE.TXT, 5),
  ];
  c.sock.write(Buffer.concat(qs.map(frame)));
  await c.until(() => c.answers.size >= 3);
  await handedCount(2);
  t.same([...c.answers.keys()].sort(), [2, 4, 5], 'the worker answered its three while the main thread had not answered yet');
  t.same(c.answers.get(2), z.lookup(parse(qs[1]!, 'tcp'), 1232), 'a hit: byte for byte the main thread zone answer');
  t.same(c.answers.get(4), z.lookup(parse(qs[3]!, 'tcp'), 1232), 'NXDOMAIN with EDNS: the same too');
  t.match(c.answers.get(5)!.toString('latin1'), /worker-1/, 'worker.podwire.invalid TXT names the worker');
  t.same(
    handed.map((h) => h.msg.readUInt16BE(0)),
    [1, 3],
    'the other zone and AXFR were handed to the main thread',
  );
  // The main thread answers the second first: each answer is written as it comes.
  handed[1]!.resolve(bareResponse(parse(handed[1]!.msg, 'tcp'), RCODE.REFUSED));
  await c.until(() => c.answers.has(3));
  t.equal(rcodeOf(c.answers.get(3)!), RCODE.REFUSED, "the main thread's answer is written on the same connection");
  handed[0]!.resolve(bareResponse(parse(handed[0]!.msg, 'tcp'), RCODE.SERVFAIL));
  await c.until(() => c.answers.has(1));
  t.equal(rcodeOf(c.answers.get(1)!), RCODE.SERVFAIL, 'and the other one');
  t.same(c.order, [2, 4, 5, 3, 1], 'answers in completion order, every one complete');

  // A query split over writes, byte by byte.
  const split = frame(buildQuery('web.prod.svc.cluster.local', TYPE.A, 6));
  for (const b of split) c.sock.write(Buffer.from([b]));
  await c.until(() => c.answers.has(6));
  t.ok(c.answers.has(6), 'a message split over many segments is answered');

  // The idle timeout: nothing sent for tcpIdleMs closes the connection.
  await c.until(() => false);
  t.ok(c.closed, 'an idle connection is closed by the worker');

  // A length below a DNS header: garbage, the connection is closed at once.
  const g = await Client.connect(port);
  g.sock.write(Buffer.from([0, 3, 1, 2, 3]));
  await g.until(() => false);
  t.same([...g.answers.keys()], [], 'no answer to garbage');
  t.ok(g.closed, 'a length below a header closes the connection');

  // Stopping: the listener goes, but an answer the worker waits for is still delivered.
  const s = await Client.connect(port);
  s.sock.write(frame(buildQuery('late.example.org', TYPE.A, 9)));
  await handedCount(3);
  const stopping = workers.stop();
  stopped = true;
  await new Promise((r) => setTimeout(r, 100));
  handed[2]!.resolve(bareResponse(parse(handed[2]!.msg, 'tcp'), RCODE.NXDOMAIN));
  await s.until(() => s.answers.has(9));
  t.equal(rcodeOf(s.answers.get(9)!), RCODE.NXDOMAIN, 'a stopping worker writes the answers still pending');
  await stopping;
  const refused = await new Promise<string>((resolve) => {
    const x = net.connect({ host: '127.0.0.1', port }, () => resolve('connected'));
    x.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  t.equal(refused, 'ECONNREFUSED', 'a stopped worker no longer listens');
});
