/**
 * The client side of the DNS socket keeper (native/dns-keeper/keeper.c).
 *
 * Why: a crash of podwired (kill -9, an OOM kill) closes its DNS sockets, and until the
 * restarted podwired binds again every query of the node's pods gets ICMP port-unreachable,
 * which resolvers count as a failure at once. The keeper, a separate ~1 MB process, holds
 * duplicates of our listening sockets. While no podwired runs, the kernel still accepts
 * queries into the kept UDP socket's receive buffer (4 MB) and TCP connections into the kept
 * listener's backlog; the restarted podwired takes the same sockets back and answers what
 * queued, so a client sees a delay, not a failure.
 *
 * Lifetime: podwired starts the keeper (detached, in its own session) when none answers on
 * the abstract name, and keeps its connection open for as long as it runs. A graceful stop
 * CLEARs the kept sockets before closing them (a kept socket nobody reads would black-hole
 * queries); a crash leaves them kept. The keeper exits when nobody is connected and it keeps
 * nothing, and drops orphaned sockets after 60 s without a podwired (native/dns-keeper).
 * In a DaemonSet it runs as a sidecar container (`--persistent`), since a container's
 * processes die with it (deploy/daemonset.yaml). Each DNS sync checks that the keeper still
 * answers and, if not, connects to (or starts) one and hands it our sockets again.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../common/log';
import { loadAddon, packagePath } from '../kernel/native';

const BIN_RELATIVE = path.join('native', 'dns-keeper', 'build', 'Release', 'podwire-dns-keeper');
const REPLY_TIMEOUT_MS = 2000;

/** The keeper binary: $PODWIRE_DNS_KEEPER_BIN, else the one built under native/dns-keeper. */
export function keeperBinary(): string {
  return process.env.PODWIRE_DNS_KEEPER_BIN || packagePath(BIN_RELATIVE);
}

/** The keeper's key of a socket: `udp 10.0.0.1:53`, `tcp [fd00::a]:53` (what the keeper reads off the socket). */
export function socketKey(proto: 'udp' | 'tcp', host: string, port: number): string {
  return `${proto} ${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export class SocketKeeper {
  private fd: number | undefined;

  private constructor(
    fd: number,
    readonly name: string,
    private readonly logger: Logger,
  ) {
    this.fd = fd;
  }

  /**
   * Connect to the keeper on `name` in this network namespace, starting one when none runs.
   * Undefined (logged) when that is impossible: no addon, no binary, or it did not come up.
   */
  static async open(name: string, logger: Logger): Promise<SocketKeeper | undefined> {
    let addon: ReturnType<typeof loadAddon>;
    try {
      addon = loadAddon();
    } catch (err) {
      logger.warn({ err }, 'native addon missing: DNS sockets are not kept across a crash');
      return undefined;
    }
    const connect = (): number | undefined => {
      try {
        return addon.seqpacketConnect(name);
      } catch {
        return undefined;
      }
    };
    let fd = connect();
    if (fd === undefined) {
      const bin = keeperBinary();
      if (!existsSync(bin)) {
        logger.warn({ bin }, 'DNS socket keeper not built: DNS sockets are not kept across a crash (npm run build:native)');
        return undefined;
      }
      const child = spawn(bin, ['--name', name], { detached: true, stdio: 'ignore' });
      child.on('error', (err) => logger.warn({ err, bin }, 'cannot start the DNS socket keeper'));
      child.unref();
      for (let i = 0; i < 50 && fd === undefined; i++) {
        await new Promise((r) => setTimeout(r, 20));
        fd = connect();
      }
      if (fd === undefined) {
        logger.warn({ bin, name }, 'the DNS socket keeper did not come up within 1 s: DNS sockets are not kept across a crash');
        return undefined;
      }
      logger.info({ name, pid: child.pid }, 'started the DNS socket keeper');
    }
    return new SocketKeeper(fd, name, logger);
  }

  /** The sockets a previous podwired left with the keeper, by key. The caller owns the fds. */
  take(): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of this.request('GET', [])) if (r.text.startsWith('FD ') && r.fd >= 0) {
      const key = r.text.slice(3);
      const dup = out.get(key);
      if (dup !== undefined) loadAddon().closeFd(dup);
      out.set(key, r.fd);
    }
    return out;
  }

  /** Keep exactly these sockets (our listening UDP and TCP sockets), replacing what was kept. */
  hold(fds: readonly number[]): void {
    this.request('SET', [...fds]);
  }

  /** True while the keeper answers (it may have been restarted, or replaced in a rolling update). */
  alive(): boolean {
    return this.fd !== undefined && this.request('PING', [])[0]?.text === 'OK';
  }

  /** A graceful stop: the keeper keeps nothing of ours (a successor's sockets are not touched). */
  release(): void {
    this.request('CLEAR', []);
  }

  close(): void {
    if (this.fd === undefined) return;
    loadAddon().closeFd(this.fd);
    this.fd = undefined;
  }

  private request(text: string, fds: number[]): { text: string; fd: number }[] {
    if (this.fd === undefined) return [];
    try {
      const replies = loadAddon().seqpacketRequest(this.fd, text, fds, REPLY_TIMEOUT_MS);
      const last = replies[replies.length - 1]?.text ?? '';
      if (last.startsWith('ERR')) this.logger.warn({ request: text, reply: last }, 'DNS socket keeper refused a request');
      return replies;
    } catch (err) {
      // A keeper that went away is not fatal: we serve as before, only without crash protection.
      this.logger.warn({ err, request: text }, 'DNS socket keeper unreachable: DNS sockets are not kept across a crash');
      this.close();
      return [];
    }
  }
}
