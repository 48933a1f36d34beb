/**
 * StateSource over a folder of standard Kubernetes manifests (`--manifests DIR`): the
 * default for standalone nodes, the lab and the demo.
 *
 * - Files: *.yaml, *.yml, *.json anywhere under DIR (dot-files and dot-directories are
 *   skipped, which also skips the `..data` links of a mounted ConfigMap).
 * - Several documents per file (`---`), and `List`/`*List` documents with `items`.
 * - Only the six kinds Podwire uses are read (v1 Node/Service/Pod/Namespace/ConfigMap,
 *   discovery.k8s.io/v1 EndpointSlice); other kinds are ignored.
 * - Changes are picked up by fs.watch (debounced) plus a periodic full rescan, because
 *   fs.watch misses events on some filesystems and for renames into the folder.
 * - A bad document is reported with file, document index and field; everything else
 *   still applies, and the object it described keeps its last good version. A YAML
 *   syntax error makes the whole file keep its last good objects until it is fixed.
 * - Deleting a file deletes its objects; identical content produces no event.
 */
import { promises as fsp, watch as fsWatch, type FSWatcher } from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { Logger } from '../common';
import { errnoCode, errorMessage, InvalidInputError } from '../common';
import { ObjectCache } from './cache';
import { CachedStateSource } from './cached-source';
import { compact, InvalidObjectError, isSupportedKind, kindOfDocument, rawKey } from './compact';
import type { ClusterKind, ClusterObject, SourceProblem } from './types';

export interface ManifestSourceOptions {
  dir: string;
  logger: Logger;
  /** Quiet time after a change notification before rescanning. */
  debounceMs?: number;
  /** Full rescan period (safety net for missed notifications). 0 disables. */
  rescanIntervalMs?: number;
  /** Bound on files read per scan and on directory depth. */
  maxFiles?: number;
  maxDepth?: number;
}

const EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

interface FileState {
  text: string;
  /** id (`Kind/key`) → last good object, or null when the id is known but never was good. */
  entries: Map<string, ClusterObject | null>;
  problems: SourceProblem[];
}

const idOf = (kind: ClusterKind, key: string): string => `${kind}/${key}`;

export class ManifestSource extends CachedStateSource {
  readonly name = 'manifests';
  private readonly log: Logger;
  private files = new Map<string, FileState>();
  private scanning: Promise<void> | undefined;
  private again = false;
  private watcher: FSWatcher | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private rescanTimer: NodeJS.Timeout | undefined;
  private signal: AbortSignal | undefined;
  private scans = 0;

  constructor(private readonly options: ManifestSourceOptions) {
    if (typeof options.dir !== 'string' || options.dir === '') throw new InvalidInputError('dir', options.dir, 'required');
    const log = options.logger.child({ component: 'manifest-source', dir: options.dir });
    super(new ObjectCache(log));
    this.log = log;
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.signal !== undefined) throw new InvalidInputError('start', 'twice', 'source already started');
    this.signal = signal;
    signal.addEventListener('abort', () => this.stop(), { once: true });
    this.ensureWatcher();
    const every = this.options.rescanIntervalMs ?? 30_000;
    if (every > 0) {
      this.rescanTimer = setInterval(() => {
        this.ensureWatcher();
        void this.rescan();
      }, every);
      this.rescanTimer.unref();
    }
    await this.rescan();
  }

  private stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    if (this.rescanTimer) clearInterval(this.rescanTimer);
  }

  /** (Re)opens the directory watcher; the folder may appear after start. */
  private ensureWatcher(): void {
    if (this.watcher !== undefined || this.signal?.aborted) return;
    try {
      this.watcher = fsWatch(this.options.dir, { persistent: false, recursive: true }, () => this.schedule());
      this.watcher.on('error', (err) => {
        this.log.warn({ err: errorMessage(err) }, 'folder watch failed; relying on periodic rescan');
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'cannot watch folder yet');
    }
  }

  private schedule(): void {
    if (this.signal?.aborted) return;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.rescan(), this.options.debounceMs ?? 100);
    this.debounceTimer.unref();
  }

  /** Number of completed scans (tests wait on it instead of sleeping). */
  get scanCount(): number {
    return this.scans;
  }

  /** Scans the folder now. Concurrent calls coalesce: one more scan runs after the current one. */
  rescan(): Promise<void> {
    if (this.scanning) {
      this.again = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.again = false;
          await this.scanOnce();
        } while (this.again && !this.signal?.aborted);
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'manifest scan failed');
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  private async listFiles(): Promise<string[] | undefined> {
    const out: string[] = [];
    const maxFiles = this.options.maxFiles ?? 10_000;
    const maxDepth = this.options.maxDepth ?? 8;
    const walk = async (dir: string, depth: number): Promise<void> => {
      const names = await fsp.readdir(dir);
      names.sort();
      for (const name of names) {
        if (name.startsWith('.') || out.length >= maxFiles) continue;
        const full = path.join(dir, name);
        const st = await fsp.stat(full).catch(() => undefined);
        if (st === undefined) continue;
        if (st.isDirectory()) {
          if (depth < maxDepth) await walk(full, depth + 1);
        } else if (st.isFile() && EXTENSIONS.has(path.extname(name).toLowerCase())) {
          out.push(full);
        }
      }
    };
    try {
      await walk(this.options.dir, 0);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        this.problemSet.set('dir', {
          kind: undefined,
          key: undefined,
          field: 'dir',
          value: this.options.dir,
          reason: 'manifest folder does not exist',
          file: this.options.dir,
        });
        return [];
      }
      // Unreadable folder: keep everything as it is.
      this.log.warn({ err: errorMessage(err) }, 'cannot read manifest folder; keeping last state');
      return undefined;
    }
    this.problemSet.clear('dir');
    return out;
  }

  private async scanOnce(): Promise<void> {
    const list = await this.listFiles();
    if (list === undefined) return;
    const next = new Map<string, FileState>();
    for (const file of list) {
      const prev = this.files.get(file);
      let text: string;
      try {
        text = await fsp.readFile(file, 'utf8');
      } catch (err) {
        // Vanished between listing and reading: treat as deleted unless it is still there.
        if (errnoCode(err) === 'ENOENT') continue;
        if (prev) next.set(file, prev);
        this.log.warn({ file, err: errorMessage(err) }, 'cannot read manifest file; keeping its objects');
        continue;
      }
      if (prev !== undefined && prev.text === text) {
        next.set(file, prev);
        continue;
      }
      const state = this.parseFile(file, text, prev);
      for (const p of state.problems) {
        this.log.warn({ file: p.file, documentIndex: p.documentIndex, kind: p.kind, key: p.key, field: p.field, value: p.value }, p.reason);
      }
      next.set(file, state);
    }
    this.files = next;
    this.applyDesired();
    this.scans++;
    this.latch.set();
  }

  private parseFile(file: string, text: string, prev: FileState | undefined): FileState {
    const entries = new Map<string, ClusterObject | null>();
    const problems: SourceProblem[] = [];
    let keepPrevious = false;
    const rel = path.relative(this.options.dir, file) || file;
    const problem = (documentIndex: number, p: Omit<SourceProblem, 'file' | 'documentIndex'>): void => {
      problems.push({ ...p, file: rel, documentIndex });
    };

    const addObject = (raw: unknown, documentIndex: number, prefix: string): void => {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        problem(documentIndex, { kind: undefined, key: undefined, field: prefix || '(document)', value: raw, reason: 'expected a Kubernetes object' });
        return;
      }
      const doc = raw as Record<string, unknown>;
      const kindName = doc.kind;
      if (typeof kindName !== 'string' || kindName === '' || typeof doc.apiVersion !== 'string') {
        problem(documentIndex, {
          kind: undefined,
          key: undefined,
          field: `${prefix}${typeof kindName !== 'string' || kindName === '' ? 'kind' : 'apiVersion'}`,
          value: typeof kindName !== 'string' || kindName === '' ? kindName : doc.apiVersion,
          reason: 'every document needs apiVersion and kind',
        });
        keepPrevious = true;
        return;
      }
      if (kindName === 'List' || kindName.endsWith('List')) {
        const items = doc.items;
        if (!Array.isArray(items)) {
          problem(documentIndex, { kind: undefined, key: undefined, field: `${prefix}items`, value: items, reason: 'a List needs items' });
          keepPrevious = true;
          return;
        }
        items.forEach((item, i) => addObject(item, documentIndex, `${prefix}items[${i}].`));
        return;
      }
      const kind = kindOfDocument(doc);
      if (kind === undefined) {
        if (isSupportedKind(kindName)) {
          problem(documentIndex, {
            kind: kindName,
            key: rawKey(kindName, doc),
            field: `${prefix}apiVersion`,
            value: doc.apiVersion,
            reason: `unsupported apiVersion for ${kindName} (expected ${kindName === 'EndpointSlice' ? 'discovery.k8s.io/v1' : 'v1'})`,
          });
          const key = rawKey(kindName, doc);
          if (key !== undefined) entries.set(idOf(kindName, key), this.cache.get(kindName, key) ?? null);
        } else {
          this.log.debug({ file: rel, documentIndex, kind: kindName }, 'ignoring kind Podwire does not use');
        }
        return;
      }
      const key = rawKey(kind, doc);
      if (key === undefined) {
        problem(documentIndex, { kind, key: undefined, field: `${prefix}metadata.name`, value: undefined, reason: 'missing metadata.name' });
        keepPrevious = true;
        return;
      }
      const id = idOf(kind, key);
      if (entries.has(id)) {
        problem(documentIndex, { kind, key, field: `${prefix}metadata.name`, value: key, reason: 'defined twice in this file; first definition used' });
        return;
      }
      try {
        entries.set(id, compact(kind, doc));
      } catch (err) {
        if (!(err instanceof InvalidObjectError)) throw err;
        problem(documentIndex, { kind, key, field: `${prefix}${err.objectField}`, value: err.value, reason: err.message });
        // Keep the last good version (from whichever file it came) under this file.
        entries.set(id, this.cache.get(kind, key) ?? null);
      }
    };

    let docs: ReturnType<typeof parseAllDocuments>;
    try {
      docs = parseAllDocuments(text, { prettyErrors: true });
    } catch (err) {
      problem(0, { kind: undefined, key: undefined, field: undefined, value: undefined, reason: `cannot parse: ${errorMessage(err)}` });
      return { text, entries: new Map(prev?.entries ?? []), problems };
    }
    const list = Array.isArray(docs) ? docs : [docs];
    list.forEach((doc, index) => {
      if (doc.errors.length > 0) {
        const e = doc.errors[0]!;
        const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
        problem(index, { kind: undefined, key: undefined, field: undefined, value: undefined, reason: `YAML syntax error${where}: ${(e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}` });
        keepPrevious = true;
        return;
      }
      let value: unknown;
      try {
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        problem(index, { kind: undefined, key: undefined, field: undefined, value: undefined, reason: errorMessage(err) });
        keepPrevious = true;
        return;
      }
      if (value === null || value === undefined) return; // empty document (e.g. a trailing ---)
      addObject(value, index, '');
    });
    // A document we could not identify may have held any of the file's objects:
    // keep their last good versions until the file is fixed.
    if (keepPrevious && prev) {
      for (const [id, obj] of prev.entries) if (!entries.has(id)) entries.set(id, obj);
    }
    return { text, entries, problems };
  }

  /** Union of all files (first file in sorted order wins a duplicate) → diff into the cache. */
  private applyDesired(): void {
    const desired = new Map<string, ClusterObject>();
    const owner = new Map<string, string>();
    const problems: SourceProblem[] = [];
    for (const [file, state] of this.files) {
      problems.push(...state.problems);
      const rel = path.relative(this.options.dir, file) || file;
      for (const [id, obj] of state.entries) {
        const first = owner.get(id);
        if (first !== undefined) {
          if (obj !== null) {
            problems.push({
              kind: obj.kind,
              key: obj.meta.key,
              field: 'metadata.name',
              value: obj.meta.key,
              reason: `also defined in ${first}; that definition is used`,
              file: rel,
            });
          }
          continue;
        }
        if (obj === null) continue;
        owner.set(id, rel);
        desired.set(id, obj);
      }
    }
    for (const obj of desired.values()) this.cache.upsert(obj);
    for (const kind of ['Node', 'Service', 'EndpointSlice', 'Pod', 'Namespace', 'ConfigMap'] as const) {
      for (const key of [...this.cache.keys(kind)]) {
        if (!desired.has(idOf(kind, key))) this.cache.remove(kind, key);
      }
    }
    this.problemSet.clearWhere((id) => id !== 'dir');
    problems.forEach((p, i) => this.problemSet.set(`p${i}`, p));
  }

}

export function createManifestSource(options: ManifestSourceOptions): ManifestSource {
  return new ManifestSource(options);
}
