/**
 * The rows of the table `podwire lab up` prints: each row is one thing the lab proves with real
 * packets, and says ok or FAILED; a FAILED row names the command that re-runs it by hand.
 *
 * Rows come in groups. A group is registered once (ROW_GROUPS in rows/index.ts) and builds its
 * rows from the running lab (`LabContext`: nodes, pods, Services, helpers to run commands in pods).
 * A group that needs a podwired component (`requires: 'proxy'`) is only run when every node's
 * `podwire status --json` lists that component; otherwise the table says which groups were skipped
 * and why. This is how the overlay, proxy and DNS components add their checks: one file in
 * src/lab/rows/ and one line in ROW_GROUPS.
 */
import type { ExecResult } from '../../test-netns/harness';
import type { Feature } from '../daemon/config';
import type { ConfigMapObject, ServiceObject } from '../k8s/types';
import type { LabState, NodeRecord, OutsideRecord, PodRecord } from './state';

export interface RowOutcome {
  ok: boolean;
  /** What was observed, short (one line of the table). */
  detail: string;
}

export interface LabRow {
  /** e.g. `pod ↔ pod, same node: web-0 → db-0`. */
  name: string;
  /** The command to re-run this check by hand (printed when it FAILS). */
  command: string;
  run(): Promise<RowOutcome>;
}

export interface LabContext {
  state: LabState;
  services: readonly ServiceObject[];
  configMaps: readonly ConfigMapObject[];
  /** The "outside" namespace (the internet), when the topology has one. */
  outside: OutsideRecord | undefined;
  /** Components every node's podwired reports (from `podwire status --json`). */
  components: ReadonlySet<Feature>;
  client: PodRecord;
  pod(name: string): PodRecord;
  node(name: string): NodeRecord;
  /** Run argv inside a pod's namespace (as `lab exec` does: resolv.conf from /etc/netns). */
  execInPod(pod: PodRecord, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
  /** Run argv inside any lab namespace (the outside, a DNS server, a node). */
  execIn(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
  /** The `podwire lab exec TARGET -- argv` command line for the re-run column (a pod, a node, `outside`). */
  execCommand(target: { name: string }, argv: readonly string[]): string;
  /** `podwire status --socket S` of a node, as a command line. */
  statusCommand(node: NodeRecord): string;
  /** Run the podwire CLI (argv after `podwire`) and collect its output. */
  podwire(argv: readonly string[]): Promise<ExecResult>;
}

export interface RowGroup {
  id: string;
  /** The podwired component this group checks; the group is skipped while it is not present. */
  requires?: Feature;
  rows(ctx: LabContext): LabRow[];
}

export interface RowResult {
  group: string;
  name: string;
  command: string;
  status: 'ok' | 'FAILED';
  detail: string;
}

export interface RunRowsResult {
  results: RowResult[];
  skipped: { group: string; reason: string }[];
}

/** Run the groups' rows one at a time (they share pods and ports); a throwing row is FAILED. */
export async function runRows(groups: readonly RowGroup[], ctx: LabContext, onRow?: (r: RowResult) => void): Promise<RunRowsResult> {
  const results: RowResult[] = [];
  const skipped: RunRowsResult['skipped'] = [];
  for (const g of groups) {
    if (g.requires && !ctx.components.has(g.requires)) {
      skipped.push({ group: g.id, reason: `podwired has no ${g.requires} component yet` });
      continue;
    }
    let rows: LabRow[];
    try {
      rows = g.rows(ctx);
    } catch (e) {
      const r: RowResult = { group: g.id, name: `${g.id}: build rows`, command: '-', status: 'FAILED', detail: (e as Error).message };
      results.push(r);
      onRow?.(r);
      continue;
    }
    for (const row of rows) {
      let o: RowOutcome;
      try {
        o = await row.run();
      } catch (e) {
        o = { ok: false, detail: `error: ${(e as Error).message.split('\n')[0]}` };
      }
      const r: RowResult = { group: g.id, name: row.name, command: row.command, status: o.ok ? 'ok' : 'FAILED', detail: o.detail };
      results.push(r);
      onRow?.(r);
    }
  }
  return { results, skipped };
}

/** The table: `#  check  result  observed`, then one `re-run:` line under each FAILED row. */
export function formatRows(results: readonly RowResult[]): string {
  const head = ['#', 'check', 'result', 'observed'];
  const rows = results.map((r, i) => [String(i + 1), r.name, r.status, r.detail]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => [...row[i]!].length)));
  const fmt = (row: string[]): string => row.map((c, i) => c + ' '.repeat(Math.max(0, widths[i]! - [...c].length))).join('  ').trimEnd();
  const out = [fmt(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  results.forEach((r, i) => {
    out.push(fmt(rows[i]!));
    if (r.status === 'FAILED') out.push(`${' '.repeat(widths[0]! + 2)}re-run: ${r.command}`);
  });
  return out.join('\n');
}

/** Shell-quote one argument for a printed command line. */
export function shq(a: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}
