/**
 * Running CNI plugins the way a runtime does (env + stdin -> stdout + exit code) inside
 * a lab "node" namespace: podwire-cni through the native shim (in-process or fast path)
 * and the reference /usr/lib/cni/bridge.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { exec, type Lab } from '../harness';
import type { BackgroundProcess } from '../harness';

export const ROOT = resolve(__dirname, '..', '..', '..');
export const SHIM = join(ROOT, 'native', 'cni-shim', 'build', 'Release', 'podwire-cni-shim');
export const SERVE_JS = join(ROOT, 'dist', 'src', 'cni-plugin', 'fastpath', 'serve.js');
export const REF_DIR = '/usr/lib/cni';

export type Mode = 'inprocess' | 'fastpath' | 'reference';

export interface CniCall {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | undefined;
}

export interface PluginRunner {
  mode: Mode;
  hostNs: string;
  socket?: string;
  daemon?: BackgroundProcess;
  run(env: Record<string, string>, conf: unknown, file?: string): Promise<CniCall>;
}

export function tmpDataDir(t: { teardown(fn: () => void): void }, tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `pwc-${tag}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts the fast-path server inside hostNs (the lab stops it at cleanup). */
export async function startFastPath(lab: Lab, hostNs: string, socket: string, env: Record<string, string> = {}): Promise<BackgroundProcess> {
  const p = lab.spawn(hostNs, [process.execPath, SERVE_JS, socket], { env: { PODWIRE_CNI_MAIN: '1', ...env } });
  await p.waitForOutput(/listening/, 10_000);
  return p;
}

export async function runner(lab: Lab, hostNs: string, mode: Mode, dataDir: string): Promise<PluginRunner> {
  const socket = join(dataDir, 'podwire.sock');
  const daemon = mode === 'fastpath' ? await startFastPath(lab, hostNs, socket) : undefined;
  const r: PluginRunner = {
    mode,
    hostNs,
    socket,
    ...(daemon ? { daemon } : {}),
    async run(env, conf, file) {
      const bin = file ?? (mode === 'reference' ? join(REF_DIR, 'bridge') : SHIM);
      const modeEnv: Record<string, string> =
        mode === 'inprocess' ? { PODWIRE_CNI_INPROCESS: '1' } : mode === 'fastpath' ? { PODWIRE_CONTROL_SOCKET: socket, PODWIRE_CNI_INPROCESS: '0' } : {};
      const res = await exec(hostNs, [bin], {
        input: typeof conf === 'string' ? conf : JSON.stringify(conf),
        env: { CNI_PATH: REF_DIR, PODWIRE_LOG_LEVEL: 'warn', ...modeEnv, ...env },
        timeoutMs: 180_000, // a loaded 2-core CI box can take long; this is a hang guard, not a timing assertion
      });
      let json: Record<string, unknown> | undefined;
      try {
        json = res.stdout.trim() === '' ? undefined : (JSON.parse(res.stdout) as Record<string, unknown>);
      } catch {
        json = undefined;
      }
      return { exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr, json };
    },
  };
  return r;
}

export function netconf(name: string, dataDir: string, extra: Record<string, unknown> = {}, subnet = '10.244.1.0/24'): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name,
    type: 'podwire',
    bridge: 'pw0',
    isGateway: true,
    isDefaultGateway: true,
    ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir },
    ...extra,
  };
}

export function cniEnv(command: string, containerId: string, podNs: string | undefined, ifname = 'eth0'): Record<string, string> {
  const e: Record<string, string> = { CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_IFNAME: ifname };
  if (podNs !== undefined) e.CNI_NETNS = `/run/netns/${podNs}`;
  return e;
}

/** The pod's first IPv4 address from an ADD result. */
export function firstIp(result: Record<string, unknown> | undefined): string {
  const ips = (result?.ips ?? []) as { address: string }[];
  return ips[0]?.address.split('/')[0] ?? '';
}
