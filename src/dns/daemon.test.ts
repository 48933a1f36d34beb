/**
 * The dns component through a real Daemon (fakes only: FakeSource, fakeKernel): its section
 * comes from the daemon's loadConfig (flags/env/defaults) via ctx.section, its intervals
 * from the registration, and its metrics, under CoreDNS's names, are on the daemon's
 * registry. Queries go over a real UDP socket on 127.0.0.1.
 */
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Packet } from 'dns2';
import t from 'tap';
import { silentLogger } from '../common/log';
import { loadConfig } from '../daemon/config';
import { Daemon } from '../daemon/daemon';
import { FakeSource, nodeObject } from '../daemon/testing/fake-source';
import { fakeKernel } from '../kernel/testing';
import { DnsComponent, dnsRegistration } from './component';
import { freePort, service } from './testing';
import { buildQuery, RCODE, TYPE } from './wire';

interface Parsed {
  header: { rcode: number };
  answers: { address?: string; ttl: number }[];
}

async function query(port: number, name: string, type: number): Promise<Parsed> {
  const s = createSocket('udp4');
  try {
    return await new Promise<Parsed>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer for ${name}`)), 2000);
      s.once('error', reject);
      s.once('message', (m) => {
        clearTimeout(timer);
        resolve(Packet.parse(m) as unknown as Parsed);
      });
      s.send(buildQuery(name, type, 77), port, '127.0.0.1');
    });
  } finally {
    s.close();
  }
}

t.test('the dns component in a real Daemon: section from the config, intervals, CoreDNS metrics', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pwdns-daemon-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'resolv.conf'), '# no nameservers\n');
  const port = await freePort();
  const loaded = loadConfig({
    argv: ['--node-name', 'n1', '--enable', 'dns', '--control-socket', path.join(dir, 'pw.sock'), '--state-dir', path.join(dir, 'state'), '--dns-listen', `127.0.0.1:${port}`, '--dns-ttl', '9', '--dns-drain-timeout', '0', '--dns-keeper', ''],
    env: { PODWIRE_DNS_RESOLV_CONF: path.join(dir, 'resolv.conf'), PODWIRE_DNS_POLICY: 'round_robin' },
    readFile: () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    },
  });
  const source = new FakeSource();
  source.apply(nodeObject('n1', ['10.244.1.0/24']));
  source.apply(service('prod', 'web', { clusterIPs: ['10.96.1.10'], ports: [{ name: 'http', port: 80 }] }));
  const d = new Daemon({ config: loaded.config, source, components: [dnsRegistration()], logger: silentLogger, processMetrics: false, tcpServers: false, kernel: fakeKernel(), sections: loaded.sections });
  const ac = new AbortController();
  await d.start(ac.signal);
  t.teardown(async () => {
    ac.abort();
    await d.stop();
  });
  const dns = d.components[0] as DnsComponent;
  t.ok(dns instanceof DnsComponent, 'the registry entry made a DnsComponent');
  t.equal(dns.section.ttl, 9, 'ctx.section built by the daemon (flag)');
  t.equal(dns.section.policy, 'round_robin', 'ctx.section built by the daemon (environment)');
  t.equal(dns.section.bindInterface, 'lo', 'ctx.section built by the daemon (default)');
  t.equal(dns.section.drainMs, 0);
  t.same(d.intervalsOf('dns'), { minIntervalMs: 100, maxIntervalMs: 30_000 }, 'dns syncs at most 100 ms after an event');

  const before = await query(port, 'web.prod.svc.cluster.local', TYPE.A);
  t.equal(before.header.rcode, RCODE.SERVFAIL, 'before the first sync: SERVFAIL');
  source.markSynced();
  let r: Parsed | undefined;
  for (let i = 0; i < 200; i++) {
    r = await query(port, 'web.prod.svc.cluster.local', TYPE.A);
    if (r.header.rcode === RCODE.NOERROR) break;
    await new Promise((res) => setTimeout(res, 10));
  }
  t.equal(r?.header.rcode, RCODE.NOERROR, 'answered after the sync');
  t.same(r?.answers.map((a) => a.address), ['10.96.1.10']);
  t.equal(r?.answers[0]?.ttl, 9, 'with the TTL of the section');
  t.equal((await query(port, 'nope.prod.svc.cluster.local', TYPE.A)).header.rcode, RCODE.NXDOMAIN);

  const text = await d.metrics.registry.metrics();
  for (const name of ['coredns_dns_requests_total', 'coredns_dns_responses_total', 'coredns_dns_request_duration_seconds', 'coredns_cache_hits_total', 'coredns_cache_misses_total', 'coredns_forward_requests_total', 'coredns_forward_healthcheck_failures_total']) {
    t.match(text, new RegExp(`^# TYPE ${name} (counter|histogram)$`, 'm'), `${name} on the daemon's registry`);
  }
  const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
  t.ok(value(/^coredns_dns_requests_total\{[^}]*proto="udp"[^}]*type="A"[^}]*\} (\d+)$/m) >= 3, 'requests counted by proto and type');
  t.equal(value(/^coredns_dns_responses_total\{[^}]*rcode="NXDOMAIN"[^}]*\} (\d+)$/m), 1, 'responses by rcode');
  t.ok(value(/^coredns_dns_responses_total\{[^}]*rcode="SERVFAIL"[^}]*\} (\d+)$/m) >= 1);
  t.ok(value(/^coredns_dns_request_duration_seconds_count\{[^}]*\} (\d+)$/m) >= 3, 'every answer in the duration histogram');
  t.match(d.status().components.find((c) => c.name === 'dns')?.status, { listen: [`127.0.0.1:${port}`] }, 'status through the daemon');
});
