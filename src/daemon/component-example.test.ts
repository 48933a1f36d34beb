/**
 * An example component written against the contract with fakes only (not shipped): a tiny
 * UDP server (start/close) that answers with what its last sync saw, a config section of
 * its own (flag, env, file, default, validation), its own sync intervals, the kernel handle
 * (a sysctl and routes, on fakeKernel()), and the indexed cluster state
 * (ctx.state.podsByNode, endpointSlicesByService), run through a real Daemon. Also the
 * lifecycle: start order, reverse close order, close only after the runners stopped, and a
 * start that throws failing the daemon's start with the component's name.
 */
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import YAML from 'yaml';
import { InvalidInputError } from '../common/errors';
import { Cidr } from '../common/ip';
import { silentLogger } from '../common/log';
import type { ClusterEvent, EndpointSliceObject, ObjectMeta, PodObject } from '../k8s/types';
import { fakeKernel, type FakeKernel } from '../kernel/testing';
import type { Component, ComponentContext, ComponentRegistration } from './component';
import { defineSection, type ConfigSection } from './config-section';
import { loadConfig, parseHostPort, type DaemonConfig, type LoadedConfig } from './config';
import { ComponentStartError, Daemon } from './daemon';
import { FakeSource, nodeObject } from './testing/fake-source';

// ---- the example component ------------------------------------------------------

interface ExampleSection {
  listen: { host: string; port: number };
  service: string;
  forwarding: boolean;
  reconcileMs: number;
}

const EXAMPLE_SECTION = defineSection<ExampleSection>({
  name: 'example',
  options: [
    { key: 'listen', flag: 'example-listen', env: 'PODWIRE_EXAMPLE_LISTEN', kind: 'string', default: '127.0.0.1:0', help: 'UDP ADDR:PORT of the status server' },
    { key: 'service', flag: 'example-service', env: 'PODWIRE_EXAMPLE_SERVICE', kind: 'string', default: 'default/web', help: 'the Service (namespace/name) whose local endpoints are pinned' },
    { key: 'kernel.forwarding', flag: 'example-forwarding', env: 'PODWIRE_EXAMPLE_FORWARDING', kind: 'bool', default: true, help: 'turn on IPv4 forwarding' },
    { key: 'reconcileInterval', flag: 'example-reconcile-interval', env: 'PODWIRE_EXAMPLE_RECONCILE_INTERVAL', kind: 'duration', default: 5000, help: 'periodic sync' },
  ],
  build(v, config) {
    const listen = parseHostPort('example.listen', v.listen as string);
    const service = v.service as string;
    if (!/^[a-z0-9-]+\/[a-z0-9-]+$/.test(service)) throw new InvalidInputError('example.service', service, 'expected namespace/name');
    const reconcileMs = v.reconcileInterval as number;
    if (reconcileMs < config.minSyncInterval) throw new InvalidInputError('example.reconcileInterval', reconcileMs, 'must be >= minSyncInterval');
    return { listen, service, forwarding: v['kernel.forwarding'] as boolean, reconcileMs };
  },
});

interface Seen {
  pods: string[];
  endpoints: string[];
  syncs: number;
}

class ExampleComponent implements Component {
  readonly name = 'example';
  private socket: Socket | undefined;
  private seen: Seen = { pods: [], endpoints: [], syncs: 0 };
  private readonly s: ExampleSection;
  address: string | undefined;

  constructor(
    private readonly ctx: ComponentContext<ExampleSection>,
    private readonly log: string[],
  ) {
    this.s = ctx.section;
  }

  handleEvent(e: ClusterEvent): boolean {
    return e.kind === 'Pod' || e.kind === 'EndpointSlice';
  }

  async start(signal: AbortSignal): Promise<void> {
    const sock = createSocket('udp4');
    sock.on('message', (_msg, rinfo) => sock.send(JSON.stringify(this.seen), rinfo.port, rinfo.address));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(this.s.listen.port, this.s.listen.host, () => resolve());
    });
    this.socket = sock;
    this.address = `${sock.address().address}:${sock.address().port}`;
    signal.addEventListener('abort', () => this.log.push('example:abort-seen'), { once: true });
    this.log.push('start:example');
  }

  async sync(): Promise<{ objects: number }> {
    this.log.push('sync:example');
    const node = this.ctx.config.nodeName;
    const pods = this.ctx.state.podsByNode(node).map((p) => p.meta.key).sort();
    const endpoints = this.ctx.state
      .endpointSlicesByService(this.s.service)
      .flatMap((sl) => sl.endpoints.filter((e) => e.nodeName === node).map((e) => e.address))
      .sort();
    if (this.s.forwarding) await this.ctx.kernel.sysctl.write('net.ipv4.ip_forward', '1');
    for (const a of endpoints) await this.ctx.kernel.net.replaceRoute({ dst: Cidr.parse(`${a}/32`), type: 'blackhole', table: 100 });
    this.seen = { pods, endpoints, syncs: this.seen.syncs + 1 };
    return { objects: endpoints.length };
  }

  status() {
    return { ...this.seen, listen: this.address };
  }

  async close(): Promise<void> {
    this.log.push('close:example');
    const sock = this.socket;
    this.socket = undefined;
    if (sock) await new Promise<void>((r) => sock.close(() => r()));
  }
}

function exampleRegistration(log: string[], made: ExampleComponent[]): ComponentRegistration<ExampleSection> {
  return {
    feature: 'proxy',
    name: 'example',
    section: EXAMPLE_SECTION,
    intervals: (s, config) => ({ minIntervalMs: config.minSyncInterval, maxIntervalMs: s.reconcileMs }),
    create: (ctx) => {
      log.push('create:example');
      const c = new ExampleComponent(ctx, log);
      made.push(c);
      return c;
    },
  };
}

/** A component that only records its lifecycle; `slowSync` makes its sync wait until released. */
function recorder(name: string, feature: 'cni' | 'dns', log: string[], opts: { failStart?: boolean; slowSync?: Promise<void> } = {}): ComponentRegistration {
  return {
    feature,
    name,
    create: () => {
      log.push(`create:${name}`);
      return {
        name,
        handleEvent: () => false,
        reconcileOnStart: async () => void log.push(`reconcile:${name}`),
        start: async () => {
          log.push(`start:${name}`);
          if (opts.failStart) throw new Error('port 53 is taken');
        },
        sync: async () => {
          log.push(`sync-begin:${name}`);
          if (opts.slowSync) await opts.slowSync;
          log.push(`sync-end:${name}`);
        },
        status: () => ({}),
        close: async () => void log.push(`close:${name}`),
      };
    },
  };
}

// ---- helpers --------------------------------------------------------------------

function meta(ns: string, name: string, labels: Record<string, string> = {}): ObjectMeta {
  return { key: `${ns}/${name}`, name, namespace: ns, uid: `uid-${ns}-${name}`, resourceVersion: '1', labels, annotations: {} };
}

function pod(ns: string, name: string, node: string, ip: string): PodObject {
  return { kind: 'Pod', meta: meta(ns, name), nodeName: node, hostNetwork: false, podIPs: [ip], hostname: undefined, subdomain: undefined, phase: 'Running' };
}

function slice(ns: string, service: string, name: string, eps: { ip: string; node: string }[]): EndpointSliceObject {
  return {
    kind: 'EndpointSlice',
    meta: meta(ns, name, { 'kubernetes.io/service-name': service }),
    serviceName: service,
    addressType: 'IPv4',
    endpoints: eps.map((e) => ({
      address: e.ip,
      conditions: { ready: true, serving: true, terminating: false },
      hostname: undefined,
      nodeName: e.node,
      zone: undefined,
    })),
    ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: undefined }],
  } as EndpointSliceObject;
}

function files(map: Record<string, string>): (f: string) => string {
  return (f) => {
    const v = map[f];
    if (v === undefined) throw Object.assign(new Error(`ENOENT: ${f}`), { code: 'ENOENT' });
    return v;
  };
}

function tmp(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwd-example-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function load(dir: string, argv: string[], env: Record<string, string> = {}, file: unknown = {}): LoadedConfig {
  return loadConfig({
    argv: ['--node-name', 'n1', '--control-socket', path.join(dir, 'pw.sock'), '--state-dir', path.join(dir, 'state'), '--min-sync-interval', '5ms', '--config', '/c.yaml', ...argv],
    env,
    readFile: files({ '/c.yaml': YAML.stringify(file) }),
    sections: [EXAMPLE_SECTION as ConfigSection<unknown>],
  });
}

function daemon(config: DaemonConfig, source: FakeSource, components: ComponentRegistration[], kernel: FakeKernel, sections?: Record<string, unknown>): Daemon {
  return new Daemon({ config, source, components, logger: silentLogger, processMetrics: false, tcpServers: false, kernel, ...(sections ? { sections } : {}) });
}

async function ask(address: string): Promise<Seen> {
  const { host, port } = parseHostPort('addr', address);
  const sock = createSocket('udp4');
  try {
    return await new Promise<Seen>((resolve, reject) => {
      sock.once('error', reject);
      sock.once('message', (m) => resolve(JSON.parse(m.toString()) as Seen));
      sock.send('?', port, host);
    });
  } finally {
    sock.close();
  }
}

/** Bounded polling (count, not time). */
async function until(fn: () => boolean | Promise<boolean>, tries = 300): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

// ---- tests ----------------------------------------------------------------------

t.test('the example section: flag, env, file, default, validation', async (t) => {
  const dir = tmp(t);
  const l = load(dir, ['--example-listen', '127.0.0.1:0'], { PODWIRE_EXAMPLE_SERVICE: 'shop/cart' }, { example: { kernel: { forwarding: false } } });
  const s = l.sections.example as ExampleSection;
  t.same(s.listen, { host: '127.0.0.1', port: 0 }, 'from the flag');
  t.equal(s.service, 'shop/cart', 'from env');
  t.equal(s.forwarding, false, 'from the file (nested)');
  t.equal(s.reconcileMs, 5000, 'default');
  t.throws(() => load(dir, ['--example-listen', 'localhost:1']), { field: 'example.listen', message: /not an IP address \(set by --example-listen\)/ });
  t.throws(() => load(dir, [], { PODWIRE_EXAMPLE_SERVICE: 'Bad' }), { field: 'example.service', message: /namespace\/name \(set by PODWIRE_EXAMPLE_SERVICE\)/ });
  t.throws(() => load(dir, [], {}, { example: { servcie: 'a/b' } }), { field: 'example.servcie', message: /did you mean example.service\?/ });
  t.throws(() => load(dir, ['--min-sync-interval', '10s']), { field: 'example.reconcileInterval', message: /set by the default/ });
});

t.test('an example component runs through a real Daemon on fakes: section, intervals, kernel, indexes, start/close', async (t) => {
  const dir = tmp(t);
  const l = load(dir, ['--enable', 'cni,proxy,dns', '--example-reconcile-interval', '2s']);
  const log: string[] = [];
  const made: ExampleComponent[] = [];
  const kernel = fakeKernel();
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  source.apply(pod('default', 'a', 'n1', '10.244.1.2'));
  source.apply(pod('default', 'b', 'n2', '10.244.2.2'));
  source.apply(slice('default', 'web', 'web-1', [{ ip: '10.244.1.2', node: 'n1' }, { ip: '10.244.2.2', node: 'n2' }]));
  source.apply(slice('other', 'web', 'web-x', [{ ip: '10.244.1.9', node: 'n1' }]));
  const d = daemon(l.config, source, [recorder('first', 'cni', log), exampleRegistration(log, made), recorder('last', 'dns', log)], kernel, l.sections);
  const ac = new AbortController();
  await d.start(ac.signal);
  t.same(log, ['create:first', 'create:example', 'create:last', 'reconcile:first', 'start:first', 'start:example', 'reconcile:last', 'start:last'], 'created in registry order, then each reconciled and started in order');
  t.same(d.intervalsOf('example'), { minIntervalMs: 5, maxIntervalMs: 2000 }, 'intervals from the section');
  t.same(d.intervalsOf('first'), { minIntervalMs: 5, maxIntervalMs: 30_000 }, 'default: the daemon-wide intervals');
  const ex = made[0]!;
  t.ok(ex.address, 'UDP server up after start');
  t.same(await ask(ex.address!), { pods: [], endpoints: [], syncs: 0 }, 'serving before the first sync');

  source.markSynced();
  t.ok(await until(async () => (await ask(ex.address!)).syncs >= 1), 'synced once the source synced');
  t.same((await ask(ex.address!)).pods, ['default/a'], 'podsByNode: this node only');
  t.same((await ask(ex.address!)).endpoints, ['10.244.1.2'], 'endpointSlicesByService: this Service, local endpoints');
  t.equal(await kernel.sysctl.read('net.ipv4.ip_forward'), '1', 'sysctl written through the kernel handle');
  t.ok(kernel.sysctl.writes.some((w) => w.key === 'net.ipv4.ip_forward' && w.value === '1'));
  t.same((await kernel.net.listRoutes({ table: 100 })).map((r) => `${r.type} ${r.dst.toString()}`), ['blackhole 10.244.1.2/32'], 'route added through the kernel handle');

  source.apply(pod('default', 'c', 'n1', '10.244.1.3'));
  source.apply(slice('default', 'web', 'web-1', [{ ip: '10.244.1.2', node: 'n1' }, { ip: '10.244.1.3', node: 'n1' }]));
  t.ok(await until(async () => (await ask(ex.address!)).endpoints.length === 2), 'an event requests a sync');
  t.same((await ask(ex.address!)).pods, ['default/a', 'default/c']);
  t.equal(d.status().components.find((c) => c.name === 'example')?.status.listen, ex.address, 'status through the daemon');

  ac.abort();
  await d.stop();
  const closes = log.filter((e) => e.startsWith('close:'));
  t.same(closes, ['close:last', 'close:example', 'close:first'], 'closed in reverse order');
  t.ok(log.indexOf('example:abort-seen') < log.indexOf('close:last'), 'the start signal aborted before any close');
  const { host, port } = parseHostPort('addr', ex.address!);
  const again = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    again.once('error', reject);
    again.bind(port, host, () => resolve());
  });
  again.close();
  t.pass('close released the UDP port');
});

t.test('close waits for in-flight syncs: runners stop first', async (t) => {
  const dir = tmp(t);
  const l = load(dir, ['--enable', 'cni,dns']);
  const log: string[] = [];
  let release!: () => void;
  const slow = new Promise<void>((r) => (release = r));
  const source = new FakeSource();
  source.markSynced();
  const d = daemon(l.config, source, [recorder('first', 'cni', log), recorder('slow', 'dns', log, { slowSync: slow })], fakeKernel());
  const ac = new AbortController();
  await d.start(ac.signal);
  t.ok(await until(() => log.includes('sync-begin:slow')), 'slow sync in flight');
  ac.abort();
  const stopped = d.stop();
  await new Promise((r) => setTimeout(r, 30));
  t.notOk(log.some((e) => e.startsWith('close:')), 'no close while a sync is in flight');
  release();
  await stopped;
  const end = log.indexOf('sync-end:slow');
  t.ok(end >= 0 && end < log.indexOf('close:slow') && end < log.indexOf('close:first'), `closes after the in-flight sync ended: ${log.join(' ')}`);
  const syncsAfterClose = log.slice(log.indexOf('close:slow')).filter((e) => e.startsWith('sync-begin'));
  t.same(syncsAfterClose, [], 'no sync after close');
});

t.test('a component whose start throws fails the daemon start, naming it; what started is closed', async (t) => {
  const dir = tmp(t);
  const l = load(dir, ['--enable', 'cni,dns']);
  const log: string[] = [];
  const d = daemon(l.config, new FakeSource(), [recorder('first', 'cni', log), recorder('dns', 'dns', log, { failStart: true })], fakeKernel());
  const err = await d.start(new AbortController().signal).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof ComponentStartError, 'ComponentStartError');
  t.match((err as Error).message, /^component dns: start failed: port 53 is taken/);
  t.equal((err as ComponentStartError).component, 'dns');
  t.same(log.filter((e) => e.startsWith('close:')), ['close:dns', 'close:first'], 'closed in reverse order');
  await d.stop();
  t.same(log.filter((e) => e.startsWith('close:')), ['close:dns', 'close:first'], 'stop() after a failed start closes nothing twice');
});

t.test('a registration whose section was not loaded gets its defaults; bad intervals name the component', async (t) => {
  const dir = tmp(t);
  const l = load(dir, ['--enable', 'proxy']);
  const made: ExampleComponent[] = [];
  const d = daemon(l.config, new FakeSource(), [exampleRegistration([], made)], fakeKernel());
  await d.createComponents();
  t.same(d.intervalsOf('example'), { minIntervalMs: 5, maxIntervalMs: 5000 }, 'section built from defaults');
  const bad: ComponentRegistration = { ...recorder('bad', 'cni', []), intervals: () => ({ minIntervalMs: 10, maxIntervalMs: 1 }) };
  const d2 = daemon(load(dir, ['--enable', 'cni']).config, new FakeSource(), [bad], fakeKernel());
  await t.rejects(d2.createComponents(), { message: /component bad: create failed: sync intervals/ });
});
