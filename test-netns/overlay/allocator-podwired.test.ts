/**
 * Issue #8's test of `--allocate-node-cidrs`, with real processes: 3 separate `bin/podwired`
 * processes race over 20 Nodes without pod CIDRs; the leader is killed with SIGKILL halfway;
 * the new leader loses nothing.
 *
 * One lab namespace holds the API-server fixture (test-netns/e2e/apiserver-child.ts, a child
 * process driven on stdin) and the 3 podwireds (each its own --state-dir, --control-socket,
 * health and metrics ports, --kubeconfig to the fixture on the namespace's 127.0.0.1, only the
 * `cni` component, short leader-election timings). The fixture holds the Node PATCHes after the
 * 10th, so the kill lands at an exact point: the leader has written 10 CIDRs and waits on its
 * 11th write. The leader is read from the Lease's holderIdentity in the fixture. After the kill
 * the held write is released (its client is gone: the fixture drops it, status 499).
 * Checked: a survivor takes the Lease (leaseTransitions counts it), all 20 Nodes end with a pod
 * CIDR of each family (dual-stack), no two share or overlap, each is a /26 of 10.244.0.0/16 and a
 * /64 of fd00:10:244::/56, together the lowest 20 of each (nothing skipped), no CIDR once seen
 * ever changed (polled), no PATCH the fixture received
 * tried to change a set spec.podCIDRs and none was refused (422), the killed leader and the new
 * one each logged 10 allocations, and nothing is left (processes, namespace, files).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Cidr, IpAddress } from '../../src/common/ip';
import { exec, labTest, type BackgroundProcess } from '../harness';
import type { KObject } from '../fixtures/apiserver/server';
import { PODWIRED_BIN } from '../lab/podwired';

const PREFIX = 'qalc';
const CHILD = path.join(__dirname, '../e2e/apiserver-child.js');
const NODES = 20;
const HALF = 10;
// Dual-stack: one pool per family, each Node gets one subnet of each.
const CLUSTER = Cidr.parse('10.244.0.0/16');
const MASK = 26;
const CLUSTER6 = Cidr.parse('fd00:10:244::/56');
const MASK6 = 64;
const NAMES = [...Array(NODES).keys()].map((i) => `node-${String(i + 1).padStart(2, '0')}`);
const IDS = NAMES.slice(0, 3);
const LEASE = 'kube-system/podwire-node-cidr-allocator';
// Short timings (the defaults are 15 s / 10 s / 2 s): a takeover within seconds, yet a renew
// may take up to 4 s on a loaded machine before a leader gives up.
const LEASE_MS = 5_000;
const TIMINGS = ['--leader-election-lease-duration', `${LEASE_MS}ms`, '--leader-election-renew-deadline', '4s', '--leader-election-retry-period', '1s'];

interface PatchRecord {
  path: string;
  status: number;
  held?: boolean;
  body?: { spec?: { podCIDR?: string; podCIDRs?: string[] } };
  before?: KObject;
}
interface WriteRecord {
  type: string;
  object: KObject;
  previous?: KObject;
}

const IpAddressOf = (c: Cidr, offset: bigint): IpAddress => IpAddress.fromBigInt(c.family, c.network.value + offset);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** `p`, or undefined after `ms` (the timer is cleared either way: no stray timer keeps the run alive). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
const podCIDRs = (n: KObject | undefined): string[] => {
  const spec = (n?.spec ?? {}) as { podCIDR?: string; podCIDRs?: string[] };
  return spec.podCIDRs?.length ? spec.podCIDRs : spec.podCIDR ? [spec.podCIDR] : [];
};

/** The fixture child: one command per line on stdin, answered `OK <cmd>[ <answer>]` or `ERR <cmd> <why>` on one line. */
function startFixture(ns: string, objects: Record<string, KObject[]>, kubeconfig: string) {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, CHILD, JSON.stringify({ objects, kubeconfig })], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  child.on('error', (e) => (err += `spawn: ${e.message}\n`));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let queue = Promise.resolve();
  /** Bounded (10 s): the answer after `OK <cmd>`, or undefined (ERR, no answer, child gone). */
  const command = (line: string): Promise<string | undefined> => {
    const run = async (): Promise<string | undefined> => {
      const mark = out.length;
      const cmd = line.split(' ')[0]!;
      child.stdin.write(`${line}\n`);
      for (let i = 0; i < 400 && child.exitCode === null; i++) {
        const lines = out.slice(mark).split('\n');
        lines.pop(); // an unfinished line
        for (const l of lines) {
          if (l === `OK ${cmd}` || l.startsWith(`OK ${cmd} `)) return l.slice(`OK ${cmd} `.length);
          if (l.startsWith(`ERR ${cmd}`)) return undefined;
        }
        await sleep(25);
      }
      return undefined;
    };
    const p = queue.then(run); // one command at a time: answers are matched by position
    queue = p.then(() => undefined);
    return p;
  };
  const json = async <T>(line: string): Promise<T | undefined> => {
    const a = await command(line);
    return a === undefined ? undefined : (JSON.parse(a) as T);
  };
  const ready = async (): Promise<boolean> => {
    for (let i = 0; i < 200 && !/READY \d+/.test(out) && child.exitCode === null; i++) await sleep(50);
    return /READY \d+/.test(out);
  };
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin.end();
      child.kill('SIGTERM');
      await within(exited, 5_000);
    }
  };
  return { child, command, json, ready, stop, output: () => `stdout: ${out.slice(-800)}\nstderr: ${err.slice(-800)}` };
}

labTest('3 podwired processes with --allocate-node-cidrs race over 20 Nodes; the leader is killed with SIGKILL halfway', { prefix: PREFIX, timeout: 150_000 }, async (t, lab) => {
  const ns = await lab.addNetns('api');
  const dir = mkdtempSync(path.join(tmpdir(), `${PREFIX}-${process.pid}-`));
  const kubeconfig = path.join(dir, 'kubeconfig');
  const nodes: KObject[] = NAMES.map((name, i) => ({ metadata: { name, labels: { 'kubernetes.io/hostname': name } }, spec: {}, status: { addresses: [{ type: 'InternalIP', address: `198.18.0.${i + 1}` }] } }));
  const api = startFixture(ns, { nodes }, kubeconfig);
  const procs = new Map<string, BackgroundProcess>();
  try {
    if (!t.ok(await api.ready(), 'the API-server fixture runs in the namespace', { out: api.output() })) return;
    t.equal(await api.command(`hold-patches nodes ${HALF}`), '', `the fixture will hold Node PATCHes after the ${HALF}th`);

    for (const [i, id] of IDS.entries()) {
      const d = path.join(dir, id);
      mkdirSync(d, { recursive: true });
      const config = path.join(d, 'config.yaml');
      writeFileSync(config, '# empty: everything is on the command line (never the host\'s /etc/podwire/config.yaml)\n');
      procs.set(id, lab.spawn(ns, [
        PODWIRED_BIN,
        '--config', config,
        '--node-name', id,
        '--kubeconfig', kubeconfig,
        '--state-dir', path.join(d, 'state'),
        '--control-socket', path.join(d, 'podwire.sock'),
        '--health-listen', `127.0.0.1:${10366 + i}`,
        '--metrics-listen', `127.0.0.1:${10376 + i}`,
        '--enable', 'cni',
        '--cni-conf-dir', path.join(d, 'net.d'),
        '--cni-bin-dir', path.join(d, 'cni-bin'),
        '--allocate-node-cidrs',
        '--cluster-cidr', `${CLUSTER.toString()},${CLUSTER6.toString()}`,
        '--node-cidr-mask-size', String(MASK),
        '--node-cidr-mask-size-ipv6', String(MASK6),
        ...TIMINGS,
        '--log-level', 'info',
      ]));
    }

    // Halfway: the leader has written HALF CIDRs and its next PATCH waits in the fixture.
    let held = 0;
    for (let i = 0; i < 240 && held === 0 && [...procs.values()].every((p) => p.exit === null); i++) {
      held = (await api.json<{ held: number }>('held-patches'))?.held ?? 0;
      if (!held) await sleep(250);
    }
    const exits = [...procs.entries()].filter(([, p]) => p.exit !== null).map(([id, p]) => `${id}: ${JSON.stringify(p.exit)} ${p.stderr.slice(-500)}`);
    t.same(exits, [], 'no podwired exited');
    if (!t.ok(held >= 1, `the leader's PATCH after the ${HALF}th is held`, { out: api.output() })) return;
    const half = (await api.json<KObject[]>('list nodes')) ?? [];
    t.equal(half.filter((n) => podCIDRs(n).length > 0).length, HALF, `${HALF} of ${NODES} Nodes have a pod CIDR before the kill`);
    const lease1 = (await api.json<KObject[]>('list leases'))?.find((l) => `${l.metadata.namespace}/${l.metadata.name}` === LEASE);
    const spec1 = (lease1?.spec ?? {}) as { holderIdentity?: string; leaseTransitions?: number };
    const leader = spec1.holderIdentity ?? '';
    if (!t.ok(procs.has(leader), `the Lease ${LEASE} is held by one of the podwireds (${leader})`, { lease1 })) return;
    const killedProc = procs.get(leader)!;
    // podwired logs pino JSON to stderr.
    const allocatedBy = (p: BackgroundProcess): number => p.stderr.split('\n').filter((l) => l.includes('"msg":"allocated pod CIDRs"')).length;
    t.equal(allocatedBy(killedProc), HALF, `the leader (${leader}) logged ${HALF} allocations`);

    // kill -9: no lease release, no goodbye; its connections are closed by the kernel.
    process.kill(killedProc.pid!, 'SIGKILL');
    const exit = await within(killedProc.exited, 10_000);
    t.same(exit, { exitCode: null, signal: 'SIGKILL' }, `the leader ${leader} died of SIGKILL`);
    // Release only once the fixture has seen the dead leader's connection close (bounded: 80 polls).
    let gone = 0;
    for (let i = 0; i < 80 && gone < held; i++) {
      gone = (await api.json<{ gone: number }>('held-patches'))?.gone ?? 0;
      if (gone < held) await sleep(50);
    }
    t.equal(gone, held, 'the fixture saw the killed leader\'s connection close');
    t.equal(await api.command('release-patches'), String(held), 'the held PATCH is released (its client is gone)');

    // Until every Node has a CIDR (bounded: 160 polls, ~40 s at most); a CIDR once seen must never change.
    const seen = new Map<string, string>();
    const changed: string[] = [];
    const observe = (list: KObject[]): void => {
      for (const n of list) {
        const c = podCIDRs(n).join(',');
        const first = seen.get(n.metadata.name);
        if (first === undefined) {
          if (c) seen.set(n.metadata.name, c);
        } else if (first !== c) changed.push(`${n.metadata.name}: ${first} -> ${c || '(none)'}`);
      }
    };
    observe(half);
    let done = false;
    for (let i = 0; i < 160 && !done; i++) {
      const list = (await api.json<KObject[]>('list nodes')) ?? [];
      observe(list);
      done = list.length === NODES && list.every((n) => podCIDRs(n).length > 0);
      if (!done) await sleep(250);
    }
    t.ok(done, `all ${NODES} Nodes got a pod CIDR after the leader was killed`, { seen: Object.fromEntries(seen) });
    // Later passes of the new leader change nothing: a few more polls (2 s).
    for (let i = 0; i < 8; i++) {
      await sleep(250);
      observe((await api.json<KObject[]>('list nodes')) ?? []);
    }
    t.same(changed, [], 'no pod CIDR changed once it was set');

    const final = (await api.json<KObject[]>('list nodes')) ?? [];
    const cidrs = final.map((n) => ({ node: n.metadata.name, cidrs: podCIDRs(n), podCIDR: (n.spec as { podCIDR?: string }).podCIDR }));
    t.same(cidrs.filter((c) => c.cidrs.length !== 2 || c.podCIDR !== c.cidrs[0]), [], 'each Node has an IPv4 and an IPv6 pod CIDR, spec.podCIDR = spec.podCIDRs[0]');
    for (const [fam, cluster, mask] of [[0, CLUSTER, MASK], [1, CLUSTER6, MASK6]] as const) {
      const parsed = cidrs.map((c) => ({ node: c.node, cidr: Cidr.parse(c.cidrs[fam] ?? '0.0.0.0/0') }));
      t.same(parsed.filter((p) => p.cidr.prefixLength !== mask || !cluster.containsCidr(p.cidr) || !p.cidr.isNetwork()).map((p) => `${p.node}: ${p.cidr.toString()}`), [], `every ${fam ? 'IPv6' : 'IPv4'} pod CIDR is a /${mask} inside ${cluster.toString()}`);
      const overlaps: string[] = [];
      for (const [i, a] of parsed.entries()) for (const b of parsed.slice(i + 1)) if (a.cidr.overlaps(b.cidr)) overlaps.push(`${a.node} ${a.cidr.toString()} / ${b.node} ${b.cidr.toString()}`);
      t.same(overlaps, [], `no two Nodes share or overlap an ${fam ? 'IPv6' : 'IPv4'} pod CIDR`);
      // The lowest NODES subnets of the pool: what "lowest free" gives when nothing is lost or skipped.
      const lowest = [...Array(NODES).keys()].map((i) => Cidr.of(IpAddressOf(cluster, BigInt(i) << BigInt(cluster.ip.bits - mask)), mask).toString());
      t.same(parsed.map((p) => p.cidr.toString()).sort(), [...lowest].sort(), `the ${fam ? 'IPv6' : 'IPv4'} ones are the lowest ${NODES} /${mask}s: nothing lost, nothing skipped`);
    }

    // Every PATCH the fixture received, and every stored change of a Node.
    const patches = (await api.json<PatchRecord[]>('patches')) ?? [];
    const nodePatches = patches.filter((p) => p.path.startsWith('/api/v1/nodes/'));
    const rewrites = nodePatches.filter((p) => {
      const had = podCIDRs(p.before);
      const want = p.body?.spec?.podCIDRs ?? (p.body?.spec?.podCIDR !== undefined ? [p.body.spec.podCIDR] : undefined);
      return had.length > 0 && want !== undefined && want.join(',') !== had.join(',');
    });
    t.same(rewrites.map((p) => `${p.path} ${p.status}: ${podCIDRs(p.before).join(',')} -> ${JSON.stringify(p.body?.spec)}`), [], `no PATCH (of ${nodePatches.length}) tried to change a set spec.podCIDRs`);
    t.equal(nodePatches.filter((p) => p.status === 422).length, 0, 'no PATCH was refused as a change of a set CIDR (422)');
    t.same(nodePatches.filter((p) => p.held).map((p) => p.status), [499], 'the one held PATCH (the killed leader\'s) was dropped unapplied');
    const applied = nodePatches.filter((p) => p.status === 200 && podCIDRs(p.before).length === 0);
    t.equal(new Set(applied.map((p) => p.path)).size, NODES, `${NODES} PATCHes gave ${NODES} different Nodes their CIDR`);
    const writes = (await api.json<WriteRecord[]>('writes nodes')) ?? [];
    const storedChanges = writes.filter((w) => w.previous && podCIDRs(w.previous).length > 0 && podCIDRs(w.previous).join(',') !== podCIDRs(w.type === 'DELETED' ? w.previous : w.object).join(','));
    t.same(storedChanges.map((w) => w.object.metadata.name), [], `no stored Node change (of ${writes.length}) altered a set pod CIDR`);

    // The Lease moved to a survivor, which did the other half.
    const lease2 = (await api.json<KObject[]>('list leases'))?.find((l) => `${l.metadata.namespace}/${l.metadata.name}` === LEASE);
    const spec2 = (lease2?.spec ?? {}) as { holderIdentity?: string; leaseTransitions?: number };
    const next = spec2.holderIdentity ?? '';
    t.ok(next !== leader && procs.has(next), `a new leader took over after the lease expired: ${next}`, { spec2 });
    t.ok((spec2.leaseTransitions ?? 0) > (spec1.leaseTransitions ?? 0), `leaseTransitions counts the change (${spec1.leaseTransitions ?? 0} -> ${spec2.leaseTransitions ?? 0})`);
    // Not before the lease expired: the successor waits leaseDuration from when it last saw the
    // record change, which is after the dead leader's last renew (one clock: the same machine).
    const leaseWrites = ((await api.json<WriteRecord[]>('writes leases')) ?? []).map((w) => w.object.spec as { holderIdentity?: string; renewTime?: string; acquireTime?: string });
    const lastRenew = Date.parse(leaseWrites.filter((w) => w.holderIdentity === leader).at(-1)?.renewTime ?? '');
    const acquired = Date.parse(leaseWrites.find((w) => w.holderIdentity === next)?.acquireTime ?? '');
    t.ok(acquired - lastRenew >= LEASE_MS - 2, `the new leader acquired the Lease no sooner than the lease duration (${LEASE_MS} ms) after the dead leader's last renew (${acquired - lastRenew} ms)`);
    if (procs.has(next)) t.equal(allocatedBy(procs.get(next)!), NODES - HALF, `the new leader (${next}) logged the other ${NODES - HALF} allocations`);
    const third = IDS.find((id) => id !== leader && id !== next);
    if (third) t.equal(allocatedBy(procs.get(third)!), 0, `the third podwired (${third}) allocated nothing`);
    t.same([...procs.entries()].filter(([id, p]) => id !== leader && p.exit !== null).map(([id]) => id), [], 'the survivors still run');
  } finally {
    for (const [id, p] of procs) {
      const killed = p.exit?.signal === 'SIGKILL';
      const e = await p.stop(5_000);
      if (!killed) t.same(e, { exitCode: 0, signal: null }, `${id}: SIGTERM stops it cleanly`);
    }
    await api.stop();
    const pids = (await exec(null, ['ip', 'netns', 'pids', ns])).stdout.trim();
    t.equal(pids, '', 'no process left in the namespace');
    rmSync(dir, { recursive: true, force: true });
    t.notOk(existsSync(dir), 'the run dir is gone');
  }
});
