/**
 * Rules programmed for every Service: each Service the proxy should program on this node
 * (podwired's `GET /v1/proxy/services`, derived from the cluster state's Service list) must
 * have its ClusterIP(s), externalIPs, LB IPs and NodePorts in the kernel, in the active
 * mode's own state (service-rules.ts reads it back). A Service podwired never programmed, or
 * whose element/rule someone deleted, is named.
 *
 * nftables mode also keeps the older table checks: our table missing, its services maps
 * empty, and (when every Service is there) an element count different from what podwired
 * applied, i.e. endpoint elements changed behind its back.
 */
import type { ExpectedServices } from '../../proxy/expected';
import { iptablesBinaries } from '../../kernel/iptables';
import { compareServices, describeMissing, emptyPresent, iptablesPresent, ipvsPresent, nftPresent, type Present } from '../service-rules';
import { componentStatus, finder, type Check, type DoctorEnv, type Finding } from '../types';

const f = finder('services');

interface NftSetJson {
  name?: string;
  flags?: string[];
  elem?: unknown[];
}

/** Element counts per set/map of an `nft -j list table` answer, dynamic (packet-filled) sets left out. */
export function elementCounts(json: unknown): Map<string, number> {
  const out = new Map<string, number>();
  const items = (json as { nftables?: Record<string, unknown>[] } | undefined)?.nftables ?? [];
  for (const item of items) {
    const s = (item.set ?? item.map) as NftSetJson | undefined;
    if (!s?.name || s.flags?.includes('dynamic')) continue;
    out.set(s.name, Array.isArray(s.elem) ? s.elem.length : 0);
  }
  return out;
}

const firstLine = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';

/** How each mode repairs a missing rule: every mode reads the kernel back every proxy syncPeriod and repairs the difference. */
const REPAIR: Record<string, string> = {
  nftables: 'podwired reads its table back at the first proxy syncPeriod (default 30 s) after another program changed any nftables table, and every 10 periods anyway (see lastSync.readBack.nextInMs in podwire status), and re-adds what is missing (it logs "changed behind our back"); restart podwired to repair now; if it comes back, look for another tool editing the table; podwire status and its log say why an apply failed',
  iptables: 'podwired re-reads its chains every proxy syncPeriod (default 30 s) and repairs them; restart podwired to repair now; if it comes back, look for another tool editing iptables',
  ipvs: 'podwired re-reads the IPVS table every proxy syncPeriod (default 30 s) and repairs it; restart podwired to repair now; if it comes back, look for another tool (ipvsadm) editing IPVS',
};

/** The findings of one comparison: ok with counts, or FAIL naming up to 5 Services. */
function compare(mode: string, where: string, exp: ExpectedServices, present: Present): Finding {
  const c = compareServices(exp, present);
  if (c.missing.length === 0) return f.ok('Services', `all ${c.services} Services programmed in ${mode} mode (${c.entries} addresses and NodePorts in ${where}; ${exp.skipped} not proxied by design)`);
  const pending = exp.pending > 0 ? `; podwired has ${exp.pending} change(s) not applied yet, re-run doctor in a few seconds` : '';
  return f.fail('Services', `${c.missing.length} of ${c.services} Services not programmed in ${where} (${c.missingEntries} of ${c.entries} addresses): ${describeMissing(c)}${pending}`, REPAIR[mode] ?? REPAIR.nftables!);
}

async function nftables(env: DoctorEnv, px: Record<string, unknown>, exp: ExpectedServices | undefined, n: number, out: Finding[]): Promise<void> {
  const tableName = exp?.table ?? (typeof px.table === 'string' ? px.table : 'inet podwire');
  const [family, table] = tableName.split(' ') as [string, string];
  let json: unknown;
  try {
    json = await env.kernel.nft.listJson(`table ${family} ${table}`);
  } catch (err) {
    // The proxier creates its table with the first Service (proxier.ts): none yet is not a fault.
    if ((exp ? exp.services : n) === 0) {
      out.push(f.ok(`table ${tableName}`, 'not created yet: there is no Service to program (podwired creates it with the first one)'));
      return;
    }
    out.push(f.fail(`table ${tableName}`, `missing from the kernel (${firstLine(err)}) although podwired programs ${n} Services`, 'podwired rebuilds it at its next periodic sync (proxy syncPeriod, default 30 s), or restart it to rebuild now; look in its log for who deleted it'));
    return;
  }
  const counts = elementCounts(json);
  const kernel = [...counts.values()].reduce((a, b) => a + b, 0);
  const applied = typeof px.elements === 'number' ? px.elements : undefined;
  const vips = (counts.get('services4') ?? 0) + (counts.get('services6') ?? 0) + (counts.get('no-endpoints4') ?? 0) + (counts.get('no-endpoints6') ?? 0);
  if (n > 0 && vips === 0) {
    out.push(f.fail(`table ${tableName}`, `podwired programs ${n} Services but the kernel's services maps are empty: no ClusterIP is forwarded`, 'podwired re-adds them at its next periodic sync (proxy syncPeriod, default 30 s); if they stay empty, its log says why the apply failed'));
    return;
  }
  let allThere = exp === undefined;
  if (exp) {
    const finding = compare('nftables', `table ${tableName}`, exp, nftPresent(json, table));
    out.push(finding);
    allThere = finding.level === 'ok';
  }
  // Endpoint elements are not in the Service list: the count still shows them changed behind our back.
  if (allThere && applied !== undefined && kernel !== applied) out.push(f.fail(`table ${tableName}`, `${kernel} elements in the kernel, ${applied} applied by podwired's last sync: the table was changed outside podwired`, REPAIR.nftables!));
  else if (allThere) out.push(f.ok(`table ${tableName}`, `${kernel} elements (${vips} Service addresses) as podwired applied them`));
}

async function iptables(env: DoctorEnv, exp: ExpectedServices, out: Finding[]): Promise<void> {
  const present = emptyPresent();
  const families = exp.families.filter((fam) => exp.entries.some((e) => e[2] === fam));
  const bins: string[] = [];
  for (const fam of families) {
    // The same binaries (legacy or nft backend) as podwired's proxy: the two keep separate rulesets.
    const save = iptablesBinaries(fam, exp.iptablesBackend ?? 'auto').save;
    bins.push(save);
    const tables: string[] = [];
    for (const t of ['nat', 'filter']) {
      const r = await env.run([save, '-t', t]);
      if (r.code !== 0) {
        out.push(f.warn('Services', `${save} -t ${t} failed (exit ${r.code}: ${r.stderr.trim().split('\n')[0] ?? ''}): the iptables rules were not compared`, `install ${save.replace(/-save$/, '')} (the proxy's iptables backend) or run doctor as root`));
        return;
      }
      tables.push(r.stdout);
    }
    iptablesPresent(fam, tables[0]!, tables[1]!, present);
  }
  out.push(compare('iptables', bins.length ? bins.join(' + ') : 'iptables', exp, present));
}

async function ipvs(env: DoctorEnv, exp: ExpectedServices, out: Finding[]): Promise<void> {
  let list;
  try {
    list = await env.ipvsServices();
  } catch (err) {
    out.push(f.warn('Services', `IPVS is absent in this kernel (${firstLine(err).slice(0, 160)}): the ${exp.services} Services' virtual servers cannot be listed, so they were not compared`, 'modprobe ip_vs (and the scheduler module, e.g. ip_vs_rr), or run the proxy in nftables mode (--proxy-mode nftables)'));
    return;
  }
  out.push(compare('ipvs', 'the IPVS table', exp, ipvsPresent(list)));
}

export const services: Check = {
  id: 'services',
  title: 'Service rules',
  async run(env) {
    const px = componentStatus(env, 'proxy');
    if (!env.status) return [f.warn('services', `no podwired status (${env.statusError ?? '?'}), Service rules not checked`, 'start podwired, or pass --socket')];
    if (!px) return [f.ok('services', 'the proxy component is not enabled on this node (kube-proxy programs Services)')];
    const n = typeof px.services === 'number' ? px.services : 0;
    const out: Finding[] = [];
    if (typeof px.invalidServices === 'number' && px.invalidServices > 0) out.push(f.warn('invalid Services', `${px.invalidServices} Service(s) rejected as invalid and not programmed`, 'podwire status lists the source problems; fix those Services'));
    const answer = await env.proxyServices();
    let exp: ExpectedServices | undefined;
    if (answer === undefined) out.push(f.warn('Service list', 'podwired does not serve /v1/proxy/services (an older podwired): Services were not compared one by one', 'upgrade podwired on this node'));
    else if ('error' in answer) out.push(f.warn('Service list', `cannot read the Services podwired should program: ${answer.error}`, 'check podwired is running (podwire status); pass --socket PATH'));
    else exp = answer;
    const mode = exp?.mode ?? String(px.mode);
    if (mode === 'nftables') await nftables(env, px, exp, n, out);
    else if (!exp) out.push(f.ok('services', `${n} Services programmed in ${mode} mode (podwired's count; not compared with the kernel)`));
    else if (mode === 'iptables') await iptables(env, exp, out);
    else if (mode === 'ipvs') await ipvs(env, exp, out);
    else out.push(f.warn('services', `unknown proxy mode ${mode}`, 'report this as a Podwire bug, with podwire doctor --json'));
    return out;
  },
};
