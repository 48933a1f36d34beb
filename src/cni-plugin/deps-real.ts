/** CniDeps over the real kernel module (src/kernel) and the host-local disk store. */
import { spawn } from 'node:child_process';
import type { Logger } from '../common/log';
import { NetnsIptables, NetnsSysctl, netnsExists, openKernel, type Kernel } from '../kernel';
import type { IptablesRunner, NetworkKernel } from '../kernel/types';
import type { CniDeps, ExecResult } from './deps';
import { DiskIpamStore } from './ipam/disk-store';

export interface RealDeps extends CniDeps {
  close(): void;
}

/**
 * One set of deps per process (in-process path) or per daemon (fast path): the node
 * namespace's netlink socket is opened once and kept warm; pod sockets are per call.
 */
export function createRealDeps(log: Logger, options: { warm?: boolean } = {}): RealDeps {
  let host: Promise<Kernel> | undefined;
  const iptables = new Map<4 | 6, IptablesRunner>();
  const sysctl = new NetnsSysctl(undefined);
  return {
    log,
    sysctl,
    ...(options.warm ? { ensured: new Set<string>() } : {}),
    async hostKernel(): Promise<NetworkKernel> {
      host ??= openKernel();
      host.catch(() => (host = undefined));
      return (await host).net;
    },
    async openPodKernel(netns): Promise<NetworkKernel> {
      return (await openKernel(netns)).net;
    },
    netnsExists,
    podSysctl: (netns) => new NetnsSysctl(netns),
    iptables(family) {
      let r = iptables.get(family);
      if (!r) iptables.set(family, (r = new NetnsIptables(family, undefined)));
      return r;
    },
    openStore: (dataDir, network) => new DiskIpamStore(dataDir, network, log),
    execPlugin,
    close() {
      void host?.then((k) => k.close()).catch(() => undefined);
      host = undefined;
    },
  };
}

function execPlugin(file: string, env: Record<string, string>, stdin: Buffer): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ exitCode: code ?? 1, stdout: Buffer.concat(out) }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}
