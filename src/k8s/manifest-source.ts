/**
 * StateSource over a folder of standard Kubernetes manifests (`--manifests DIR`): the
 * default for standalone nodes, the lab and the demo.
 *
 * - Files: *.yaml, *.yml, *.json anywhere under DIR (dot-files and dot-directories are
 *   skipped, which also skips the `..data` links of a mounted ConfigMap).
 * - Several documents per file (`---`), and `List`/`*List` documents with `items`.
 * - Only the six kinds Podwire uses are read (v1 Node/Service/Pod/Namespace/ConfigMap,
 *   discovery.k8s.io/v1 EndpointSlice); other kinds are ignored.
 * - `.json` files are parsed with JSON.parse (one document, index 0); `.yaml`/`.yml` with
 *   the YAML parser (several documents).
 * - Changes: fs.watch (recursive) names the paths that changed; only those are re-read,
 *   after a short resetting debounce (default 10 ms, at most 50 ms after the first event),
 *   so a change to one file of a 10,000-Service folder reaches the handlers within tens
 *   of milliseconds. A write via rename (editors, `kubectl`-style tools, the `..data`
 *   swap of a mounted ConfigMap) is seen as a change of the final name, or triggers a
 *   stat-only rescan. A periodic full rescan (default 30 s) is the safety net: it stats
 *   every file and re-reads only those whose mtime/size/inode changed (or that changed
 *   too close to when they were read to trust the mtime); a re-read file whose content
 *   hash is unchanged is not parsed again.
 * - Only objects from changed files are re-resolved (which file defines an id), so the
 *   cost of a change is proportional to the changed files, not to the folder.
 * - A bad document is reported with file, document index and field; everything else
 *   still applies, and the object it described keeps its last good version. A YAML
 *   syntax error makes the whole file keep its last good objects until it is fixed.
 * - Deleting a file deletes its objects; identical content produces no event.
 */
import { createHash } from 'node:crypto';
import { promises as fsp, watch as fsWatch, type FSWatcher, type Stats } from 'node:fs';
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
  /**
   * Quiet time after a change notification before the changed files are read (resets on
   * each notification; default 10 ms). Bounded by maxDelayMs after the first one.
   */
  debounceMs?: number;
  /** Upper bound on the delay from the first notification to reading (default 50 ms). */
  maxDelayMs?: number;
  /**
   * A delete seen by a watch-triggered read waits this long (default 50 ms) for another
   * file to define the object (an object moved between files by two writes), so a move is
   * not delivered as delete + add. Full rescans delete at once.
   */
  deleteGraceMs?: number;
  /** A file that became empty is read again after this long (default 50 ms) before its objects are deleted. */
  emptyRecheckMs?: number;
  /** Full rescan period (safety net for missed notifications). 0 disables. */
  rescanIntervalMs?: number;
  /** Bound on files read per scan and on directory depth. */
  maxFiles?: number;
  maxDepth?: number;
}

const EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

interface FileState {
  /** Content hash of what was parsed. */
  hash: string;
  /** The stat at the time of reading, and when that was (racy-mtime check). */
  mtimeMs: number;
  size: number;
  ino: number;
  readAt: number;
  /** id (`Kind/key`) → last good object, or null when the id is known but never was good. */
  entries: Map<string, ClusterObject | null>;
  problems: SourceProblem[];
  /** YAML: what each document (by content hash) gave, so an edit re-parses only the documents it touched. */
  docs?: Map<string, DocResult>;
}

/** The outcome of one YAML/JSON document, independent of its position in the file. */
interface DocResult {
  /** [id, object (null: known but never good), field of metadata.name for duplicate reports]. */
  entries: [string, ClusterObject | null, string][];
  problems: Omit<SourceProblem, 'documentIndex'>[];
  /** The document could not be identified: the file keeps its previous objects. */
  keep: boolean;
}

/**
 * Splits a YAML stream at its `---` document markers (a marker is only valid at column 0,
 * and the spec forbids one inside any scalar there), so each document can be parsed and
 * cached on its own. Returns undefined for streams it does not split (directives, `...`
 * end markers): those are parsed whole.
 */
function splitYamlDocuments(text: string): { text: string; line: number }[] | undefined {
  if (/^(%|\.\.\.(\s|$))/m.test(text)) return undefined;
  const out: { text: string; line: number }[] = [];
  const re = /^---(?=[ \t\r\n]|$)/gm;
  let start = 0;
  let startLine = 1;
  let line = 1;
  let scanned = 0;
  const countLines = (to: number): void => {
    for (let i = scanned; i < to; i++) if (text.charCodeAt(i) === 10) line++;
    scanned = to;
  };
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m.index === 0) continue;
    out.push({ text: text.slice(start, m.index), line: startLine });
    countLines(m.index);
    start = m.index;
    startLine = line;
  }
  out.push({ text: text.slice(start), line: startLine });
  return out;
}

/** Only whitespace and comments: not a document of its own before the first `---`. */
const BLANK_PREAMBLE = /^(\s*(#[^\n]*)?\n?)*$/;

const idOf = (kind: ClusterKind, key: string): string => `${kind}/${key}`;

function splitId(id: string): { kind: ClusterKind; key: string } {
  const i = id.indexOf('/');
  return { kind: id.slice(0, i) as ClusterKind, key: id.slice(i + 1) };
}

/** The walk's order (sorted names, depth first), as a comparison of two paths. */
function compareFiles(a: string, b: string): number {
  const sa = a.split(path.sep);
  const sb = b.split(path.sep);
  for (let i = 0; i < Math.min(sa.length, sb.length); i++) {
    if (sa[i] !== sb[i]) return sa[i]! < sb[i]! ? -1 : 1;
  }
  return sa.length - sb.length;
}

/** A file whose mtime is this close to when it was read may have changed again in the same tick. */
const RACY_MS = 2000;
/** A file that became empty is re-checked after this long before its objects are deleted (truncate-then-write). */
const EMPTY_RECHECK_MS = 50;

function hashOf(buf: Buffer): string {
  return createHash('sha1').update(buf).digest('base64');
}

/** Line and column (1-based) of a character offset. */
function lineCol(text: string, pos: number): { line: number; col: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, col: pos - last };
}

export class ManifestSource extends CachedStateSource {
  readonly name = 'manifests';
  private readonly log: Logger;
  private files = new Map<string, FileState>();
  /** id → the files that mention it (the first in walk order with a good object wins). */
  private readonly holders = new Map<string, Set<string>>();
  /** Serialises scans: one batch (full or partial) at a time. */
  private queue: Promise<void> = Promise.resolve();
  private fullQueued: Promise<void> | undefined;
  private watcher: FSWatcher | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private firstPendingAt = 0;
  private readonly pendingPaths = new Set<string>();
  private pendingFull = false;
  private readonly emptyRechecked = new Set<string>();
  private readonly graceDeletes = new Set<string>();
  private graceTimer: NodeJS.Timeout | undefined;
  /** Problems by file (parse and validation) and by id (duplicates across files). */
  private readonly fileProblems = new Map<string, SourceProblem[]>();
  private readonly dupProblems = new Map<string, SourceProblem[]>();
  private rescanTimer: NodeJS.Timeout | undefined;
  private signal: AbortSignal | undefined;
  private scans = 0;
  private readonly stats = { fullScans: 0, partialScans: 0, filesRead: 0, filesParsed: 0, yamlDocumentsParsed: 0 };

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
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.rescanTimer) clearInterval(this.rescanTimer);
  }

  /** (Re)opens the directory watcher; the folder may appear after start. */
  private ensureWatcher(): void {
    if (this.watcher !== undefined || this.signal?.aborted) return;
    try {
      this.watcher = fsWatch(this.options.dir, { persistent: false, recursive: true }, (_event, filename) => this.notify(filename));
      this.watcher.on('error', (err) => {
        this.log.warn({ err: errorMessage(err) }, 'folder watch failed; relying on periodic rescan');
        this.watcher?.close();
        this.watcher = undefined;
        this.notify(null);
      });
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'cannot watch folder yet');
    }
  }

  /** A watch notification: remember what changed, and read it shortly. */
  private notify(filename: string | Buffer | null): void {
    if (this.signal?.aborted) return;
    const rel = filename === null ? null : filename.toString();
    if (rel === null || rel === '') {
      this.pendingFull = true;
    } else {
      const segments = rel.split(path.sep);
      if (segments.some((seg) => seg.startsWith('..'))) {
        // A mounted ConfigMap swaps its `..data` link: the visible files are links into it.
        this.pendingFull = true;
      } else if (segments.some((seg) => seg.startsWith('.'))) {
        return; // dot-files (editor swap files, temp files before a rename) are not manifests
      } else {
        this.pendingPaths.add(path.join(this.options.dir, rel));
      }
    }
    this.schedule();
  }

  private schedule(): void {
    const now = Date.now();
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    else this.firstPendingAt = now;
    const quiet = this.options.debounceMs ?? 10;
    const maxDelay = this.options.maxDelayMs ?? 50;
    const wait = Math.max(0, Math.min(quiet, this.firstPendingAt + maxDelay - now));
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      void this.flush();
    }, wait);
    this.debounceTimer.unref();
  }

  /** Processes what notifications named: the paths alone, or everything if they could not say. */
  private flush(): Promise<void> {
    if (this.pendingFull) {
      this.pendingFull = false;
      this.pendingPaths.clear();
      return this.rescan();
    }
    if (this.pendingPaths.size === 0) return Promise.resolve();
    const paths = [...this.pendingPaths];
    this.pendingPaths.clear();
    return this.enqueue(() => this.scanPaths(paths));
  }

  /** Number of completed scans, full or partial (tests wait on it instead of sleeping). */
  get scanCount(): number {
    return this.scans;
  }

  /**
   * Work counters: scans by kind, files read, files parsed (a read with an unchanged hash
   * is not parsed), and YAML documents parsed (an unchanged document is not parsed again).
   */
  scanStats(): { fullScans: number; partialScans: number; filesRead: number; filesParsed: number; yamlDocumentsParsed: number } {
    return { ...this.stats };
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    const run = this.queue.then(async () => {
      if (this.signal?.aborted) return;
      try {
        await fn();
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'manifest scan failed');
      }
    });
    this.queue = run;
    return run;
  }

  /**
   * Scans the whole folder now (stat every file, read the changed ones). Calls made while
   * one is waiting to run share it.
   */
  rescan(): Promise<void> {
    if (this.fullQueued) return this.fullQueued;
    const run = this.enqueue(async () => {
      this.fullQueued = undefined;
      await this.scanAll();
    });
    this.fullQueued = run;
    return run;
  }

  private maxFiles(): number {
    return this.options.maxFiles ?? 10_000;
  }

  /** Every manifest file under the folder, with its stat; undefined if the folder cannot be read. */
  private async listFiles(): Promise<Map<string, Stats> | undefined> {
    const out = new Map<string, Stats>();
    const maxFiles = this.maxFiles();
    const maxDepth = this.options.maxDepth ?? 8;
    const walk = async (dir: string, depth: number): Promise<void> => {
      const names = (await fsp.readdir(dir)).filter((n) => !n.startsWith('.'));
      names.sort();
      // Stat in parallel (the thread pool does the work), then visit in sorted order.
      const stats = await Promise.all(names.map((n) => fsp.stat(path.join(dir, n)).catch(() => undefined)));
      for (let i = 0; i < names.length; i++) {
        if (out.size >= maxFiles) return;
        const st = stats[i];
        if (st === undefined) continue;
        const full = path.join(dir, names[i]!);
        if (st.isDirectory()) {
          if (depth < maxDepth) await walk(full, depth + 1);
        } else if (st.isFile() && EXTENSIONS.has(path.extname(full).toLowerCase())) {
          out.set(full, st);
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
        return out;
      }
      // Unreadable folder: keep everything as it is.
      this.log.warn({ err: errorMessage(err) }, 'cannot read manifest folder; keeping last state');
      return undefined;
    }
    if (out.size >= maxFiles) this.log.warn({ maxFiles }, 'manifest folder has more files than maxFiles; the rest are ignored');
    this.problemSet.clear('dir');
    return out;
  }

  private async scanAll(): Promise<void> {
    const listed = await this.listFiles();
    if (listed === undefined) return;
    const changes = new Map<string, FileState | undefined>();
    for (const file of this.files.keys()) if (!listed.has(file)) changes.set(file, undefined);
    const toRead: string[] = [];
    for (const [file, st] of listed) {
      const prev = this.files.get(file);
      if (prev !== undefined && prev.mtimeMs === st.mtimeMs && prev.size === st.size && prev.ino === st.ino && st.mtimeMs < prev.readAt - RACY_MS) continue;
      toRead.push(file);
    }
    // A few reads in flight at a time: enough to keep the thread pool busy, without
    // holding every file of a big folder in memory at once.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < toRead.length) {
        const file = toRead[next++]!;
        const prev = this.files.get(file);
        const state = await this.readFile(file, prev);
        if (state !== prev) changes.set(file, state);
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, toRead.length) }, worker));
    this.apply(changes);
    this.stats.fullScans++;
    this.scans++;
    this.latch.set();
  }

  /** The paths a watch named: files are re-read, directories walked, vanished ones dropped. */
  private async scanPaths(paths: string[]): Promise<void> {
    const changes = new Map<string, FileState | undefined>();
    const maxDepth = this.options.maxDepth ?? 8;
    const visit = async (p: string): Promise<void> => {
      const rel = path.relative(this.options.dir, p);
      if (rel.startsWith('..') || path.isAbsolute(rel)) return;
      const st = await fsp.stat(p).catch(() => undefined);
      if (st === undefined || st.isDirectory()) {
        // Gone (file or directory), or a directory that appeared or moved in: everything
        // we knew under it is re-checked, and a directory is walked.
        const prefix = p + path.sep;
        for (const file of this.files.keys()) if (file === p || file.startsWith(prefix)) changes.set(file, undefined);
        if (st !== undefined && rel.split(path.sep).length <= maxDepth) {
          const names = await fsp.readdir(p).catch(() => [] as string[]);
          for (const n of names) if (!n.startsWith('.')) await visit(path.join(p, n));
        }
        return;
      }
      if (!st.isFile() || !EXTENSIONS.has(path.extname(p).toLowerCase())) return;
      if (rel.split(path.sep).length - 1 > maxDepth) return;
      const prev = this.files.get(p);
      if (prev === undefined && this.files.size >= this.maxFiles()) {
        this.log.warn({ file: rel, maxFiles: this.maxFiles() }, 'more manifest files than maxFiles; ignoring a new one');
        return;
      }
      const next = await this.readFile(p, prev);
      if (next === undefined) {
        changes.set(p, undefined);
        return;
      }
      // Truncate-then-write: a file that just became empty is checked again shortly
      // before its objects are deleted.
      if (st.size === 0 && prev !== undefined && prev.entries.size > 0 && !this.emptyRechecked.has(p)) {
        this.emptyRechecked.add(p);
        changes.delete(p);
        setTimeout(() => {
          this.pendingPaths.add(p);
          this.schedule();
        }, this.options.emptyRecheckMs ?? EMPTY_RECHECK_MS).unref();
        return;
      }
      this.emptyRechecked.delete(p);
      if (next !== prev) changes.set(p, next);
    };
    for (const p of paths) await visit(p);
    this.apply(changes, true);
    this.stats.partialScans++;
    this.scans++;
  }

  /**
   * Reads one file: the previous state if the content hash is unchanged (with the new
   * stat), a freshly parsed one otherwise, undefined if it is gone. A read error keeps
   * the previous state.
   */
  private async readFile(file: string, prev: FileState | undefined): Promise<FileState | undefined> {
    let buf: Buffer;
    let st: Stats;
    const readAt = Date.now();
    try {
      [buf, st] = await Promise.all([fsp.readFile(file), fsp.stat(file)]);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      this.log.warn({ file, err: errorMessage(err) }, 'cannot read manifest file; keeping its objects');
      return prev;
    }
    this.stats.filesRead++;
    const hash = hashOf(buf);
    if (prev !== undefined && prev.hash === hash) {
      prev.mtimeMs = st.mtimeMs;
      prev.size = st.size;
      prev.ino = st.ino;
      prev.readAt = readAt;
      return prev;
    }
    this.stats.filesParsed++;
    const state = this.parseFile(file, buf.toString('utf8'), prev);
    state.hash = hash;
    state.mtimeMs = st.mtimeMs;
    state.size = st.size;
    state.ino = st.ino;
    state.readAt = readAt;
    for (const p of state.problems) {
      this.log.warn({ file: p.file, documentIndex: p.documentIndex, kind: p.kind, key: p.key, field: p.field, value: p.value }, p.reason);
    }
    return state;
  }

  private parseFile(file: string, text: string, prev: FileState | undefined): FileState {
    const rel = path.relative(this.options.dir, file) || file;
    const entries = new Map<string, ClusterObject | null>();
    const problems: SourceProblem[] = [];
    let keepPrevious = false;
    /** Adds one document's outcome at its position in the file. */
    const assemble = (documentIndex: number, r: DocResult): void => {
      for (const p of r.problems) problems.push({ ...p, file: rel, documentIndex });
      for (const [id, obj, field] of r.entries) {
        if (entries.has(id)) {
          const { kind, key } = splitId(id);
          problems.push({ kind, key, field, value: key, reason: 'defined twice in this file; first definition used', file: rel, documentIndex });
          continue;
        }
        entries.set(id, obj);
      }
      if (r.keep) keepPrevious = true;
    };
    const finish = (docs?: Map<string, DocResult>): FileState => {
      // A document we could not identify may have held any of the file's objects:
      // keep their last good versions until the file is fixed.
      if (keepPrevious && prev) {
        for (const [id, obj] of prev.entries) if (!entries.has(id)) entries.set(id, obj);
      }
      const state = this.fileState(entries, problems);
      if (docs !== undefined) state.docs = docs;
      return state;
    };
    const unreadable = (reason: string): FileState => {
      problems.push({ kind: undefined, key: undefined, field: undefined, value: undefined, reason, file: rel, documentIndex: 0 });
      return this.fileState(new Map(prev?.entries ?? []), problems);
    };

    if (path.extname(file).toLowerCase() === '.json') {
      // JSON: one document, parsed natively (YAML's parser takes ~50× longer on big files).
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        const m = /position (\d+)/.exec(errorMessage(err));
        const where = m ? lineCol(text, Number(m[1])) : undefined;
        const msg = errorMessage(err).replace(/ \(line \d+ column \d+\)$/, '');
        return unreadable(`JSON syntax error${where ? ` at line ${where.line}, column ${where.col}` : ''}: ${msg}`);
      }
      assemble(0, this.documentResult(value));
      return finish();
    }

    // YAML, document by document: an unchanged document reuses what it gave last time.
    const chunks = splitYamlDocuments(text);
    if (chunks !== undefined) {
      const docs = new Map<string, DocResult>();
      let index = 0;
      let whole = false;
      for (let c = 0; c < chunks.length && !whole; c++) {
        const chunk = chunks[c]!;
        if (c === 0 && BLANK_PREAMBLE.test(chunk.text)) continue;
        const h = createHash('sha1').update(chunk.text).digest('base64');
        let r = prev?.docs?.get(h) ?? docs.get(h);
        if (r === undefined) {
          const parsed = this.parseYamlDocument(chunk.text, chunk.line);
          if (parsed === undefined) {
            whole = true; // not exactly one document: parse the stream as a whole
            break;
          }
          r = parsed;
        }
        docs.set(h, r);
        assemble(index++, r);
      }
      if (!whole) return finish(docs);
      entries.clear();
      problems.length = 0;
      keepPrevious = false;
    }

    let docs: ReturnType<typeof parseAllDocuments>;
    try {
      docs = parseAllDocuments(text, { prettyErrors: true });
    } catch (err) {
      return unreadable(`cannot parse: ${errorMessage(err)}`);
    }
    const list = Array.isArray(docs) ? docs : [docs];
    list.forEach((doc, index) => assemble(index, this.yamlDocumentResult(doc, 0)));
    return finish();
  }

  /** One chunk of a split stream; undefined unless it holds exactly one document. */
  private parseYamlDocument(text: string, firstLine: number): DocResult | undefined {
    this.stats.yamlDocumentsParsed++;
    let docs: ReturnType<typeof parseAllDocuments>;
    try {
      docs = parseAllDocuments(text, { prettyErrors: true });
    } catch {
      return undefined;
    }
    const list = Array.isArray(docs) ? docs : [docs];
    if (list.length !== 1) return list.length === 0 ? { entries: [], problems: [], keep: false } : undefined;
    return this.yamlDocumentResult(list[0]!, firstLine - 1);
  }

  private yamlDocumentResult(doc: ReturnType<typeof parseAllDocuments>[number], lineOffset: number): DocResult {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line + lineOffset}, column ${e.linePos[0].col}` : '';
      const reason = `YAML syntax error${where}: ${(e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}`;
      return { entries: [], problems: [{ kind: undefined, key: undefined, field: undefined, value: undefined, reason }], keep: true };
    }
    let value: unknown;
    try {
      // A JSON round trip: the YAML parser hands out slices of the file text, and a compact
      // object holding one would keep the whole file alive (measured: +4 KB per Service).
      value = JSON.parse(JSON.stringify(doc.toJS({ maxAliasCount: 100 })));
    } catch (err) {
      return { entries: [], problems: [{ kind: undefined, key: undefined, field: undefined, value: undefined, reason: errorMessage(err) }], keep: true };
    }
    if (value === null || value === undefined) return { entries: [], problems: [], keep: false }; // empty document (e.g. a trailing ---)
    return this.documentResult(value);
  }

  /** What one parsed document (an object, or a List of them) gives. */
  private documentResult(value: unknown): DocResult {
    const result: DocResult = { entries: [], problems: [], keep: false };
    const problem = (p: Omit<SourceProblem, 'file' | 'documentIndex'>): void => {
      result.problems.push(p);
    };
    const addObject = (raw: unknown, prefix: string): void => {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        problem({ kind: undefined, key: undefined, field: prefix || '(document)', value: raw, reason: 'expected a Kubernetes object' });
        return;
      }
      const doc = raw as Record<string, unknown>;
      const kindName = doc.kind;
      if (typeof kindName !== 'string' || kindName === '' || typeof doc.apiVersion !== 'string') {
        problem({
          kind: undefined,
          key: undefined,
          field: `${prefix}${typeof kindName !== 'string' || kindName === '' ? 'kind' : 'apiVersion'}`,
          value: typeof kindName !== 'string' || kindName === '' ? kindName : doc.apiVersion,
          reason: 'every document needs apiVersion and kind',
        });
        result.keep = true;
        return;
      }
      if (kindName === 'List' || kindName.endsWith('List')) {
        const items = doc.items;
        if (!Array.isArray(items)) {
          problem({ kind: undefined, key: undefined, field: `${prefix}items`, value: items, reason: 'a List needs items' });
          result.keep = true;
          return;
        }
        items.forEach((item, i) => addObject(item, `${prefix}items[${i}].`));
        return;
      }
      const kind = kindOfDocument(doc);
      if (kind === undefined) {
        if (isSupportedKind(kindName)) {
          const key = rawKey(kindName, doc);
          problem({
            kind: kindName,
            key,
            field: `${prefix}apiVersion`,
            value: doc.apiVersion,
            reason: `unsupported apiVersion for ${kindName} (expected ${kindName === 'EndpointSlice' ? 'discovery.k8s.io/v1' : 'v1'})`,
          });
          if (key !== undefined) result.entries.push([idOf(kindName, key), this.cache.get(kindName, key) ?? null, `${prefix}metadata.name`]);
        } else {
          this.log.debug({ kind: kindName }, 'ignoring kind Podwire does not use');
        }
        return;
      }
      const key = rawKey(kind, doc);
      if (key === undefined) {
        problem({ kind, key: undefined, field: `${prefix}metadata.name`, value: undefined, reason: 'missing metadata.name' });
        result.keep = true;
        return;
      }
      const id = idOf(kind, key);
      try {
        result.entries.push([id, compact(kind, doc), `${prefix}metadata.name`]);
      } catch (err) {
        if (!(err instanceof InvalidObjectError)) throw err;
        problem({ kind, key, field: `${prefix}${err.objectField}`, value: err.value, reason: err.message });
        // Keep the last good version (from whichever file it came) under this file.
        result.entries.push([id, this.cache.get(kind, key) ?? null, `${prefix}metadata.name`]);
      }
    };
    addObject(value, '');
    return result;
  }

  private fileState(entries: Map<string, ClusterObject | null>, problems: SourceProblem[]): FileState {
    return { hash: '', mtimeMs: 0, size: 0, ino: 0, readAt: 0, entries, problems };
  }

  /**
   * Applies changed files (undefined: gone) to the cache: only the ids those files held
   * before or hold now are re-resolved. The first file in walk order with a good object
   * for an id wins; later good definitions are reported as duplicates.
   */
  private apply(changes: Map<string, FileState | undefined>, graceDeletes = false): void {
    if (changes.size === 0) return;
    const affected = new Set<string>();
    for (const [file, next] of changes) {
      const prev = this.files.get(file);
      if (prev === next) continue;
      this.fileProblems.delete(file);
      if (prev !== undefined) {
        for (const id of prev.entries.keys()) {
          affected.add(id);
          const h = this.holders.get(id);
          h?.delete(file);
          if (h !== undefined && h.size === 0) this.holders.delete(id);
        }
      }
      if (next === undefined) {
        this.files.delete(file);
        continue;
      }
      this.files.set(file, next);
      for (const id of next.entries.keys()) {
        affected.add(id);
        let h = this.holders.get(id);
        if (h === undefined) this.holders.set(id, (h = new Set()));
        h.add(file);
      }
      if (next.problems.length > 0) this.fileProblems.set(file, next.problems);
    }
    for (const id of affected) this.resolve(id, graceDeletes);
  }

  /** Deletes held back by resolve(): resolved again (deleted unless some file defines them now). */
  private scheduleGraceDeletes(): void {
    if (this.graceTimer !== undefined) return;
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      void this.enqueue(async () => {
        const ids = [...this.graceDeletes];
        this.graceDeletes.clear();
        for (const id of ids) this.resolve(id, false);
      });
    }, this.options.deleteGraceMs ?? 50);
    this.graceTimer.unref();
  }

  private resolve(id: string, graceDelete = false): void {
    const { kind, key } = splitId(id);
    this.dupProblems.delete(id);
    const h = this.holders.get(id);
    let winner: ClusterObject | undefined;
    let winnerRel = '';
    if (h !== undefined) {
      const files = h.size === 1 ? [...h] : [...h].sort(compareFiles);
      for (const file of files) {
        const obj = this.files.get(file)?.entries.get(id);
        if (obj === null || obj === undefined) continue;
        const rel = path.relative(this.options.dir, file) || file;
        if (winner === undefined) {
          winner = obj;
          winnerRel = rel;
          continue;
        }
        const dup: SourceProblem = {
          kind: obj.kind,
          key: obj.meta.key,
          field: 'metadata.name',
          value: obj.meta.key,
          reason: `also defined in ${winnerRel}; that definition is used`,
          file: rel,
        };
        const list = this.dupProblems.get(id);
        if (list === undefined) this.dupProblems.set(id, [dup]);
        else list.push(dup);
      }
    }
    if (winner !== undefined) {
      this.graceDeletes.delete(id);
      this.cache.upsert(winner);
    } else if (graceDelete && this.cache.get(kind, key) !== undefined && (this.options.deleteGraceMs ?? 50) > 0) {
      this.graceDeletes.add(id);
      this.scheduleGraceDeletes();
    } else {
      this.graceDeletes.delete(id);
      this.cache.remove(kind, key);
    }
  }

  /** The folder's problems, then each file's in walk order, then duplicates. */
  override problems(): SourceProblem[] {
    const out = this.problemSet.list();
    const files = [...this.fileProblems.keys()].sort(compareFiles);
    for (const f of files) out.push(...this.fileProblems.get(f)!);
    for (const list of this.dupProblems.values()) out.push(...list);
    return out;
  }
}

export function createManifestSource(options: ManifestSourceOptions): ManifestSource {
  return new ManifestSource(options);
}
