/**
 * 200 pods, 4 ADDs at a time, on both paths: no duplicate IP, then 4-way DEL leaves no
 * link, reservation or rule behind.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { exec, labTest } from '../harness';
import { cniEnv, firstIp, netconf, runner, tmpDataDir, type Mode } from './helpers';

const PODS = 200;
const PARALLEL = 4;

async function pool<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

/** Registers the test for one path; each path has its own file (tap's per-file time budget). */
export function concurrencyTest(mode: Mode): void {
  labTest(`200 pods 4-way concurrent (${mode})`, { prefix: 'pwc-conc', requires: ['veth', 'bridge'], timeout: 600_000 }, async (t, lab) => {
    const data = tmpDataDir(t, 'conc');
    const host = await lab.addNetns('host');
    const cni = await runner(lab, host, mode, data);
    const conf = netconf('concnet', data, { ipMasq: true }, '10.244.2.0/24');
    const pods: string[] = [];
    pods.push(...(await pool(PODS, 8, () => lab.addPod())));

    const adds = await pool(PODS, PARALLEL, (i) => cni.run(cniEnv('ADD', `conc-${i}`, pods[i]!), conf));
    const failed = adds.filter((a) => a.exitCode !== 0);
    t.equal(failed.length, 0, `every ADD succeeded${failed[0] ? `: ${failed[0].stdout}` : ''}`);
    const ips = adds.map((a) => firstIp(a.json));
    t.equal(new Set(ips).size, PODS, '0 duplicate IPs');
    t.equal(readdirSync(join(data, 'concnet')).filter((f) => f.startsWith('10.')).length, PODS, 'one reservation per pod');
    const links = (await exec(host, ['ip', '-o', 'link', 'show', 'master', 'pw0'])).stdout.trim().split('\n');
    t.equal(links.length, PODS, 'one bridge port per pod');

    const dels = await pool(PODS, PARALLEL, (i) => cni.run(cniEnv('DEL', `conc-${i}`, pods[i]!), conf));
    const delFailed = dels.filter((d) => d.exitCode !== 0);
    t.equal(delFailed.length, 0, `every DEL succeeded${delFailed[0] ? `: ${delFailed[0].exitCode} ${delFailed[0].stdout} ${delFailed[0].stderr.slice(0, 500)}` : ''}`);
    t.equal((await exec(host, ['ip', '-o', 'link', 'show', 'master', 'pw0'])).stdout.trim(), '', '0 leftover links');
    t.same(readdirSync(join(data, 'concnet')).filter((f) => f.startsWith('10.')), [], '0 leftover reservations');
    const nat = (await exec(host, ['iptables-legacy-save', '-t', 'nat'])).stdout + (await exec(host, ['iptables-save', '-t', 'nat'])).stdout;
    t.notMatch(nat, /PW-MASQ-/, '0 leftover rules');
  });
}
