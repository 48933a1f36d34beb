import pino from 'pino';

export type Logger = pino.Logger;

export interface LogOptions {
  level?: string;
  /** Where log lines go. CNI must log to stderr only, since stdout carries the result. */
  destination?: 'stdout' | 'stderr';
}

/** Root logger. Every component takes a child with `{ component }`. */
export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? process.env.PODWIRE_LOG_LEVEL ?? 'info';
  const fd = options.destination === 'stdout' ? 1 : 2;
  return pino({ level, base: { pid: process.pid } }, pino.destination({ fd, sync: true }));
}

/** A logger that drops everything; for tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
