/**
 * bench/sources, the manifest path: a folder of N Services (+ one EndpointSlice each) in
 * many files, half JSON and half YAML, and the time from writing one changed file to the
 * change reaching an event handler (in this process) or the real podwired's /metrics.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { silentLogger } from '../../src/common';
import { createManifestSource } from '../../src/k8s';
import { endpointSlice, namespace, node, podIP, service, serviceIP, type ClusterShape } from '../../test-netns/fixtures/apiserver/objects';
import type { KObject } from '../../test-netns/fixtures/apiserver/server';

export interface ManifestFolder {
  dir: string;
  files: number;
  bytes: number;
  counts: { services: number; endpointSlices: number; endpoints: number; nodes: number; namespaces: number };
  /**
   * Rewrites one file with one Service's port changed (rendered first, then written);
   * returns the Service's name, the file, its type and performance.now() just before the write.
   */
  change(round: number): { service: string; file: string; type: 'json' | 'yaml'; writtenAt: number };
}

const withKind = (kind: string, apiVersion: string, o: KObject): KObject => ({ apiVersion, kind, ...o });

/** Writes the folder: nodes.yaml, namespaces.yaml and `services/part-NNNN.{json,yaml}` of `perFile` Services each. */
export function writeManifestFolder(dir: string, shape: ClusterShape & { perFile: number }): ManifestFolder {
  mkdirSync(join(dir, 'services'), { recursive: true });
  let bytes = 0;
  const put = (rel: string, text: string): void => {
    writeFileSync(join(dir, rel), text);
    bytes += Buffer.byteLength(text);
  };
  const nodeNames: string[] = [];
  const nodes: KObject[] = [];
  for (let i = 0; i < shape.nodes; i++) {
    nodeNames.push(`node-${i}`);
    nodes.push(withKind('Node', 'v1', node(`node-${i}`, `198.18.${Math.floor(i / 250)}.${(i % 250) + 2}`, `10.244.${i % 256}.0/24`)));
  }
  put('nodes.yaml', nodes.map((n) => stringify(n)).join('---\n'));
  const nss: KObject[] = [];
  for (let i = 0; i < shape.namespaces; i++) nss.push(withKind('Namespace', 'v1', namespace(`ns-${i}`)));
  put('namespaces.json', JSON.stringify({ apiVersion: 'v1', kind: 'List', items: nss }));

  const files = Math.ceil(shape.services / shape.perFile);
  let endpoints = 0;
  const render = (f: number, changedPort: number | undefined): { rel: string; text: string; first: string } => {
    const items: KObject[] = [];
    let ep = f * shape.perFile * shape.endpointsPerService;
    for (let s = f * shape.perFile; s < Math.min(shape.services, (f + 1) * shape.perFile); s++) {
      const ns = `ns-${s % shape.namespaces}`;
      const svc = withKind('Service', 'v1', service(ns, `svc-${s}`, serviceIP(s)));
      if (changedPort !== undefined && s === f * shape.perFile) (svc.spec as { ports: { port: number }[] }).ports[0]!.port = changedPort;
      const ips: string[] = [];
      for (let k = 0; k < shape.endpointsPerService; k++) ips.push(podIP(ep++ % 64_000));
      items.push(svc, withKind('EndpointSlice', 'discovery.k8s.io/v1', endpointSlice(ns, `svc-${s}`, `svc-${s}-aaaaa`, ips, nodeNames)));
    }
    const yaml = f % 2 === 1;
    const rel = join('services', `part-${String(f).padStart(4, '0')}.${yaml ? 'yaml' : 'json'}`);
    return { rel, text: yaml ? items.map((o) => stringify(o)).join('---\n') : JSON.stringify({ apiVersion: 'v1', kind: 'List', items }), first: `svc-${f * shape.perFile}` };
  };
  for (let f = 0; f < files; f++) {
    const { rel, text } = render(f, undefined);
    put(rel, text);
  }
  endpoints = shape.services * shape.endpointsPerService;
  return {
    dir,
    files: files + 2,
    bytes,
    counts: { services: shape.services, endpointSlices: shape.services, endpoints, nodes: shape.nodes, namespaces: shape.namespaces },
    change(round) {
      // Spread rounds over the folder, alternating JSON and YAML files.
      const f = (round * 74 + (round % 2)) % files;
      const { rel, text, first } = render(f, 10_000 + round);
      const writtenAt = performance.now();
      writeFileSync(join(dir, rel), text);
      return { service: first, file: rel, type: f % 2 === 1 ? 'yaml' : 'json', writtenAt };
    },
  };
}

export interface ManifestSourceResult {
  kind: 'manifest-source';
  layout: { services: number; endpointSlices: number; endpoints: number; files: number; megabytes: number };
  initialSyncMs: number;
  rssMb: number;
  latencyMs: { rounds: number; median: number; p90: number; max: number; medianJson: number; medianYaml: number };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

/** The manifest source in this process: initial load, then `rounds` single-file changes, write → handler. */
export async function measureManifestSource(folder: ManifestFolder, rounds: number): Promise<ManifestSourceResult> {
  const src = createManifestSource({ dir: folder.dir, logger: silentLogger, rescanIntervalMs: 0 });
  let waiting: { name: string; resolve: (at: number) => void } | undefined;
  src.onEvent((e) => {
    if (waiting && e.type === 'update' && e.kind === 'Service' && e.current.meta.name === waiting.name) waiting.resolve(performance.now());
  });
  const ac = new AbortController();
  try {
    const t0 = performance.now();
    await src.start(ac.signal);
    await src.waitForSync(AbortSignal.timeout(300_000));
    const initialSyncMs = performance.now() - t0;
    const state = src.state();
    if (state.size('Service') !== folder.counts.services || state.size('EndpointSlice') !== folder.counts.endpointSlices) {
      throw new Error(`manifest source loaded ${state.size('Service')} Services / ${state.size('EndpointSlice')} slices, expected ${folder.counts.services} / ${folder.counts.endpointSlices}; problems: ${JSON.stringify(src.problems().slice(0, 3))}`);
    }
    if (src.problems().length > 0) throw new Error(`manifest problems: ${JSON.stringify(src.problems().slice(0, 3))}`);
    const rss = process.memoryUsage().rss;
    const all: number[] = [];
    const byType: Record<'json' | 'yaml', number[]> = { json: [], yaml: [] };
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < rounds; i++) {
      let resolve!: (at: number) => void;
      const seen = new Promise<number>((r) => (resolve = r));
      let name = '';
      // The handler may run before change() returns (it cannot: the write is synchronous
      // and events are delivered later on this thread), so the target is known in time.
      waiting = { name: '', resolve };
      const c = folder.change(i);
      const tWrite = c.writtenAt;
      name = c.service;
      waiting.name = name;
      // A ref'd timer: the source's watcher and timers do not keep this process alive.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`manifest change ${i} (${c.file}) not delivered within 10 s`)), 10_000);
      });
      const at = await Promise.race([seen, timeout]).finally(() => clearTimeout(timer));
      waiting = undefined;
      all.push(at - tWrite);
      byType[c.type].push(at - tWrite);
      await new Promise((r) => setTimeout(r, 50));
    }
    if (all.length !== rounds) throw new Error(`only ${all.length} of ${rounds} manifest changes measured`);
    const sorted = [...all].sort((a, b) => a - b);
    return {
      kind: 'manifest-source',
      layout: { services: folder.counts.services, endpointSlices: folder.counts.endpointSlices, endpoints: folder.counts.endpoints, files: folder.files, megabytes: round2(folder.bytes / 1048576) },
      initialSyncMs: Math.round(initialSyncMs),
      rssMb: Math.round((rss / 1048576) * 10) / 10,
      latencyMs: {
        rounds,
        median: round2(median(all)),
        p90: round2(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))]!),
        max: round2(sorted.at(-1)!),
        medianJson: round2(median(byType.json)),
        medianYaml: round2(median(byType.yaml)),
      },
    };
  } finally {
    ac.abort();
  }
}
