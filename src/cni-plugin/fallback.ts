/**
 * Fast-path fallbacks must never be silent. The installed shim (native/cni-shim) reads
 * `<cniBinDir>/podwire.conf`, written by podwired beside the binary:
 *
 *   control_socket=/run/podwire/podwire.sock
 *   state_dir=/var/lib/podwire
 *
 * When it cannot connect to that socket it runs the in-process path with
 * PODWIRE_CNI_CONF (the file it read), PODWIRE_CNI_FALLBACK (the socket) and
 * PODWIRE_CNI_FALLBACK_REASON (strerror) set. The in-process path then appends one JSON
 * line to `<state_dir>/cni-fallbacks` (O_APPEND: concurrent plugins never interleave a
 * line); podwired counts the lines as `podwire_cni_fallback_total` and shows the last
 * one in `podwire status`. The file is capped (FALLBACK_FILE_MAX) so a node whose
 * daemon is gone for good cannot fill its disk; the count then stops growing and the
 * status says so.
 */
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

export const CNI_CONF_NAME = 'podwire.conf';
export const FALLBACK_FILE = 'cni-fallbacks';
export const FALLBACK_FILE_MAX = 1 << 20;

export interface ShimConf {
  controlSocket: string | undefined;
  stateDir: string | undefined;
}

/** `key=value` lines; unknown keys and comments are ignored. */
export function parseShimConf(text: string): ShimConf {
  const out: ShimConf = { controlSocket: undefined, stateDir: undefined };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const eq = line.indexOf('=');
    if (line.startsWith('#') || eq <= 0) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1).trim();
    if (!path.isAbsolute(value)) continue;
    if (key === 'control_socket') out.controlSocket = value;
    else if (key === 'state_dir') out.stateDir = value;
  }
  return out;
}

export function renderShimConf(conf: { controlSocket: string; stateDir: string }): string {
  for (const v of [conf.controlSocket, conf.stateDir]) {
    if (/[\n\r]/.test(v)) throw new RangeError(`podwire.conf: a path may not contain a line break: ${JSON.stringify(v)}`);
  }
  return `# Written by podwired (the cni component); read by the podwire CNI binary beside it.\ncontrol_socket=${conf.controlSocket}\nstate_dir=${conf.stateDir}\n`;
}

export interface FallbackRecord {
  at: string;
  command: string;
  containerId: string;
  socket: string;
  reason: string;
}

/**
 * Called by the in-process path: when the shim says it fell back from a configured
 * daemon, append the record. Never throws (a record must not fail the CNI command).
 * Returns the file written, if any.
 */
export function recordFallbackFromEnv(env: Readonly<Record<string, string | undefined>>, now: Date = new Date()): string | undefined {
  const socket = env.PODWIRE_CNI_FALLBACK;
  const confPath = env.PODWIRE_CNI_CONF;
  if (!socket || !confPath) return undefined;
  try {
    const conf = parseShimConf(readFileSync(confPath, 'utf8').slice(0, 4096));
    if (!conf.stateDir) return undefined;
    const file = path.join(conf.stateDir, FALLBACK_FILE);
    try {
      if (statSync(file).size >= FALLBACK_FILE_MAX) return undefined;
    } catch {
      /* not there yet */
    }
    const record: FallbackRecord = {
      at: now.toISOString(),
      command: (env.CNI_COMMAND ?? '').slice(0, 16),
      containerId: (env.CNI_CONTAINERID ?? '').slice(0, 128),
      socket: socket.slice(0, 256),
      reason: (env.PODWIRE_CNI_FALLBACK_REASON ?? 'unknown').slice(0, 128),
    };
    const fd = openSync(file, 'a', 0o644);
    try {
      writeSync(fd, JSON.stringify(record) + '\n');
    } finally {
      closeSync(fd);
    }
    return file;
  } catch {
    return undefined;
  }
}

export interface FallbackSummary {
  count: number;
  last: FallbackRecord | undefined;
  /** The file reached FALLBACK_FILE_MAX: later fallbacks are not counted. */
  capped: boolean;
}

/** Reads `<stateDir>/cni-fallbacks`, re-reading only when its size or mtime changed. */
export class FallbackReader {
  private stamp = '';
  private summary: FallbackSummary = { count: 0, last: undefined, capped: false };

  constructor(readonly file: string) {}

  read(): FallbackSummary {
    let stamp: string;
    try {
      const st = statSync(this.file, { bigint: true });
      stamp = `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      this.stamp = '';
      this.summary = { count: 0, last: undefined, capped: false };
      return this.summary;
    }
    if (stamp === this.stamp) return this.summary;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return this.summary;
    }
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    let last: FallbackRecord | undefined;
    try {
      last = lines.length > 0 ? (JSON.parse(lines[lines.length - 1]!) as FallbackRecord) : undefined;
    } catch {
      last = undefined;
    }
    this.stamp = stamp;
    this.summary = { count: lines.length, last, capped: Buffer.byteLength(text) >= FALLBACK_FILE_MAX };
    return this.summary;
  }
}
