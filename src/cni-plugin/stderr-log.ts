/**
 * The in-process path's logger: pino-compatible JSON lines on stderr (level number, time,
 * pid, bindings, msg), without loading pino (its require alone is ~15-30 ms of a plugin
 * start that the runtime pays on every pod when podwired is down). Only what runCni and the
 * IPAM store use: the six level methods, `child` and `level`.
 */
import type { Logger } from '../common/log';

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

type Fields = Record<string, unknown>;

function plain(fields: Fields): Fields {
  const out: Fields = {};
  for (const [k, v] of Object.entries(fields)) out[k] = v instanceof Error ? { type: v.name, message: v.message } : v;
  return out;
}

export function createStderrLogger(level: string, write: (line: string) => void = (l) => void process.stderr.write(l)): Logger {
  const min = LEVELS[level] ?? LEVELS.warn!;
  const make = (bindings: Fields): Logger => {
    const at = (n: number) => (a?: unknown, b?: unknown): void => {
      if (n < min) return;
      const fields = typeof a === 'object' && a !== null ? plain(a as Fields) : {};
      const msg = typeof a === 'string' ? a : typeof b === 'string' ? b : undefined;
      write(JSON.stringify({ level: n, time: Date.now(), pid: process.pid, ...bindings, ...fields, ...(msg === undefined ? {} : { msg }) }) + '\n');
    };
    const logger = {
      level,
      trace: at(10),
      debug: at(20),
      info: at(30),
      warn: at(40),
      error: at(50),
      fatal: at(60),
      silent: () => undefined,
      isLevelEnabled: (l: string) => (LEVELS[l] ?? Infinity) >= min,
      child: (more: Fields) => make({ ...bindings, ...more }),
    };
    return logger as unknown as Logger;
  };
  return make({});
}
