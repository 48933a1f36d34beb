/** Small network probes run inside a namespace. */
import { exec, type NsName } from './exec';

export interface PingOptions {
  /** Echo requests to send (default 1). */
  count?: number;
  /** Seconds to wait for each reply (ping -W, default 2). */
  waitS?: number;
  /** Seconds between requests (ping -i, default 0.2; root may go below 1 s). */
  intervalS?: number;
}

export interface PingResult {
  /** true when ping exited 0, i.e. at least one reply came back. */
  ok: boolean;
  /** ping's stdout+stderr, for assertion messages. */
  output: string;
  exitCode: number | null;
}

/** `ping -n -c COUNT -i INTERVAL -W WAIT ADDRESS` inside ns (IPv6 addresses use ping -6). */
export async function ping(ns: NsName, address: string, opts: PingOptions = {}): Promise<PingResult> {
  const count = opts.count ?? 1;
  const waitS = opts.waitS ?? 2;
  const family = address.includes(':') ? '-6' : '-4';
  const intervalS = opts.intervalS ?? 0.2;
  const argv = ['ping', family, '-n', '-c', String(count), '-i', String(intervalS), '-W', String(waitS), address];
  const r = await exec(ns, argv, {
    timeoutMs: (count * (waitS + intervalS + 1) + 5) * 1000,
  });
  return { ok: r.exitCode === 0, output: `${r.stdout}${r.stderr}`.trim(), exitCode: r.exitCode };
}
