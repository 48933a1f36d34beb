/**
 * `podwire doctor`: checks one node and says in plain words what is wrong and how to fix it.
 * One file per check under checks/; each returns findings (ok / warn / FAIL with a one-line fix).
 */
import { checksumOffload } from './checks/offload';
import { cniConfig } from './checks/cni-config';
import { dns } from './checks/dns';
import { foreignDrop } from './checks/foreign-drop';
import { ipForward } from './checks/forwarding';
import { iptablesNft } from './checks/iptables-nft';
import { kernelFeatures } from './checks/kernel-features';
import { mtu } from './checks/mtu';
import { peers } from './checks/peers';
import { services } from './checks/services';
import { finder, type Check, type DoctorEnv, type Finding } from './types';

export type { Check, DoctorEnv, Finding, Level, RunOutput } from './types';
export { realEnv, fetchStatus } from './env';

export const CHECKS: readonly Check[] = [kernelFeatures, ipForward, mtu, checksumOffload, cniConfig, peers, dns, services, foreignDrop, iptablesNft];

export interface DoctorReport {
  node: string | undefined;
  status: 'ok' | 'warn' | 'FAIL';
  findings: Finding[];
  counts: { ok: number; warn: number; FAIL: number };
}

export async function runDoctor(env: DoctorEnv, checks: readonly Check[] = CHECKS): Promise<DoctorReport> {
  const findings: Finding[] = [];
  if (!env.status) findings.push(finder('podwired').warn('control socket', env.statusError ?? 'no status', 'start podwired, or pass --socket PATH; the checks below that need its state are skipped'));
  else findings.push(finder('podwired').ok('control socket', `podwired ${env.status.version} on ${env.status.nodeName}: backend ${env.status.config.backend}, proxy mode ${env.status.config.proxyMode}${env.status.ready ? '' : ' (NOT READY)'}`));
  for (const c of checks) {
    try {
      findings.push(...(await c.run(env)));
    } catch (err) {
      findings.push(finder(c.id).warn(c.title, `the check itself failed: ${err instanceof Error ? err.message : String(err)}`, 'report this as a Podwire bug, with podwire doctor --json'));
    }
  }
  const counts = { ok: 0, warn: 0, FAIL: 0 };
  for (const x of findings) counts[x.level]++;
  return { node: env.status?.nodeName, status: counts.FAIL ? 'FAIL' : counts.warn ? 'warn' : 'ok', findings, counts };
}

export function formatReport(r: DoctorReport): string {
  const out: string[] = [];
  for (const x of r.findings) {
    out.push(`${x.level.padEnd(5)} ${x.check.padEnd(17)} ${x.subject}: ${x.detail}`);
    if (x.fix && x.level !== 'ok') out.push(`${''.padEnd(23)} fix: ${x.fix}`);
  }
  out.push('', `${r.node ?? 'this node'}: ${r.counts.ok} ok, ${r.counts.warn} warn, ${r.counts.FAIL} FAIL`);
  return out.join('\n') + '\n';
}
