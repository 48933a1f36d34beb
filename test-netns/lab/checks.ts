/**
 * The demo's checks and their summary table. A check is one observed fact (a daemon became
 * ready, a CNI ADD returned an address, a ping got a reply, a TCP payload arrived) with its
 * expectation; `passed` says whether the observation matched it.
 */
import { exec, ping, type Lab } from '../harness';

export interface CheckResult {
  /** What kind of check, e.g. `podwired ready`, `ping pod->pod (x-node)`, `tcp (x-node)`. */
  kind: string;
  from: string;
  to: string;
  /** What must be observed, e.g. `reply`, `no reply`, `exit 0`. */
  expect: string;
  passed: boolean;
  /** A short observation for the table (address, rtt, exit code). */
  detail: string;
  /** Raw output for the failure report. */
  output?: string;
}

export type Log = (msg: string) => void;

export class Checks {
  readonly results: CheckResult[] = [];
  constructor(private readonly log: Log) {}

  record(r: CheckResult): CheckResult {
    this.results.push(r);
    this.log(`${r.passed ? 'PASS' : 'FAIL'} ${r.kind} ${r.from}${r.to === '-' ? '' : ` -> ${r.to}`}: ${r.detail}`);
    return r;
  }

  get failed(): CheckResult[] {
    return this.results.filter((r) => !r.passed);
  }
}

/**
 * Run `tasks` with at most `limit` in flight; results in the tasks' order. Pings spend most of
 * their time waiting, so a few at once keep the largest demo (8 nodes x 16 pods) short.
 */
export async function inParallel<T>(tasks: readonly (() => Promise<T>)[], limit = 8): Promise<T[]> {
  const results: T[] = new Array<T>(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

/** `ping address` from a namespace (`from`/`to` are the table's labels); `expectReply` false is a negative control (it must NOT answer). */
export async function pingCheck(
  kind: string,
  fromNs: string,
  from: string,
  address: string,
  to: string,
  expectReply: boolean,
): Promise<CheckResult> {
  const r = await ping(fromNs, address, { count: 2, intervalS: 0.2, waitS: expectReply ? 2 : 1 });
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.output)?.[1];
  return {
    kind,
    from,
    to,
    expect: expectReply ? 'reply' : 'no reply',
    passed: r.ok === expectReply,
    detail: r.ok ? `replies${rtt ? `, avg rtt ${rtt} ms` : ''}` : 'no reply',
    output: r.output,
  };
}

/** Wait (bounded: `tries` polls, 50 ms apart) until something listens on TCP `port` in `ns`. */
async function waitListening(ns: string, port: number, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const r = await exec(ns, ['ss', '-Hltn', `sport = :${port}`]);
    if (r.stdout.trim() !== '') return true;
    await new Promise((res) => setTimeout(res, 50));
  }
  return false;
}

export interface TcpEndpoint {
  ns: string;
  ip: string;
  /** Label for the table, e.g. `node1/p1 10.244.1.2`. */
  label: string;
}

/**
 * TCP with netcat: `nc -l` in the server pod, the client sends a unique token with `nc -N`
 * (shut down after stdin's EOF); passes when the token shows up on the server's stdout, which
 * needs the handshake in both directions and the payload across.
 */
export async function tcpCheck(lab: Lab, kind: string, server: TcpEndpoint, client: TcpEndpoint, port: number): Promise<CheckResult> {
  const token = `podwire-lab-${process.pid}-${port}-${Math.random().toString(36).slice(2, 10)}`;
  const base = { kind, from: client.label, to: `${server.label}:${port}`, expect: 'payload arrives' };
  const srv = lab.spawn(server.ns, ['nc', '-l', '-p', String(port)]);
  try {
    if (!(await waitListening(server.ns, port)))
      return { ...base, passed: false, detail: `nc -l did not start listening on :${port}`, output: srv.stderr };
    const c = await exec(client.ns, ['nc', '-N', '-w', '3', server.ip, String(port)], { input: `${token}\n`, timeoutMs: 10_000 });
    let arrived = srv.stdout.includes(token);
    if (!arrived && c.exitCode === 0) {
      // The client sent it; give the server a bounded moment to print it.
      arrived = await srv.waitForOutput(new RegExp(token), 3_000).then(() => true, () => false);
    }
    return {
      ...base,
      passed: c.exitCode === 0 && arrived,
      detail: arrived ? `${token.length + 1} bytes arrived` : `client exit ${String(c.exitCode)}, nothing arrived`,
      output: `client: ${c.stdout}${c.stderr}\nserver: ${srv.stdout}${srv.stderr}`,
    };
  } finally {
    await srv.stop(1_000);
  }
}

/** Negative control for TCP: a port nobody listens on must refuse the connection. */
export async function tcpRefusedCheck(kind: string, server: TcpEndpoint, client: TcpEndpoint, port: number): Promise<CheckResult> {
  const c = await exec(client.ns, ['nc', '-v', '-z', '-w', '2', server.ip, String(port)], { timeoutMs: 10_000 });
  const out = `${c.stdout}${c.stderr}`;
  // "Connection refused" means the SYN reached the pod and its RST came back; a timeout would
  // also make nc fail, but for the wrong reason (no path), so it does not count.
  const refused = /refused/i.test(out);
  return {
    kind,
    from: client.label,
    to: `${server.label}:${port}`,
    expect: 'refused',
    passed: c.exitCode !== 0 && refused,
    detail: c.exitCode === 0 ? 'connected (a listener answered)' : refused ? 'connection refused (RST came back)' : `failed without a RST: ${out.trim().slice(0, 80)}`,
    output: out,
  };
}

export function formatTable(results: readonly CheckResult[]): string {
  const rows = [
    ['#', 'check', 'from', 'to', 'expect', 'result', 'observed'],
    ...results.map((r, i) => [String(i + 1), r.kind, r.from, r.to, r.expect, r.passed ? 'PASS' : 'FAIL', r.detail]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]): string => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [fmt(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(fmt)].join('\n');
}
