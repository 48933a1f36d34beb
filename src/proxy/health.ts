/**
 * kube-proxy's two health endpoints:
 * - the proxier health server (`/healthz`, `/livez` on 10256): 200 while rules are
 *   fresh, i.e. a sync has succeeded and no change has waited longer than the health
 *   timeout (2 × syncPeriod, as kube-proxy); body `{lastUpdated, currentTime, nodeEligible}`.
 * - one server per `healthCheckNodePort` (eTP Local LoadBalancers): 200 with the local
 *   endpoint count when this node has one, else 503, body
 *   `{"service":{"namespace","name"},"localEndpoints":N,"serviceProxyHealthy":bool}`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../common/clock';
import type { Logger } from '../common/log';

function split(hostPort: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(hostPort)!;
  return { host: (m[1] ?? m[2])!, port: Number(m[3]) };
}

function listen(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onErr = (err: Error): void => reject(err);
    server.once('error', onErr);
    // reusePort: a successor podwired (rolling upgrade, maxSurge 1) binds the same ports while
    // this one drains, as the DNS, health and metrics servers do.
    server.listen({ host, port, reusePort: true }, () => {
      server.off('error', onErr);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
}

export class ProxierHealth {
  lastUpdated: number | undefined;
  /** Time of the oldest change not yet applied. */
  oldestPending: number | undefined;
  private server: http.Server | undefined;
  port: number | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly timeoutMs: number,
  ) {}

  healthy(): boolean {
    const now = this.clock.now();
    if (this.lastUpdated === undefined) return false;
    if (this.oldestPending !== undefined && now - this.oldestPending > this.timeoutMs) return false;
    return true;
  }

  body(): { status: number; body: string } {
    const now = this.clock.now();
    const ok = this.healthy();
    return {
      status: ok ? 200 : 503,
      body: JSON.stringify({
        lastUpdated: new Date(this.lastUpdated ?? 0).toISOString(),
        currentTime: new Date(now).toISOString(),
        nodeEligible: true,
      }),
    };
  }

  async listen(hostPort: string): Promise<void> {
    if (hostPort === '' || this.server) return;
    const { host, port } = split(hostPort);
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/healthz' && path !== '/livez') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const b = this.body();
      res.writeHead(b.status, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff' }).end(b.body);
    });
    this.port = await listen(server, host, port);
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await close(s);
  }
}

interface HcEntry {
  server: http.Server | undefined;
  namespace: string;
  name: string;
  localEndpoints: number;
}

/** healthCheckNodePort servers, reconciled after every sync. */
export class ServiceHealthServers {
  private readonly servers = new Map<number, HcEntry>();

  constructor(
    private readonly bindAddress: string,
    private readonly logger: Logger,
  ) {}

  ports(): number[] {
    return [...this.servers.keys()];
  }

  /** `desired`: port → the Service and its local endpoint count. */
  async reconcile(desired: Map<number, { namespace: string; name: string; localEndpoints: number }>): Promise<void> {
    for (const [port, e] of this.servers) {
      if (!desired.has(port)) {
        this.servers.delete(port);
        if (e.server) await close(e.server);
      }
    }
    for (const [port, d] of desired) {
      const e = this.servers.get(port);
      if (e) {
        e.namespace = d.namespace;
        e.name = d.name;
        e.localEndpoints = d.localEndpoints;
        continue;
      }
      const entry: HcEntry = { server: undefined, ...d };
      this.servers.set(port, entry);
      const server = http.createServer((_req, res) => {
        const ok = entry.localEndpoints > 0;
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff', 'x-load-balancing-endpoint-weight': String(entry.localEndpoints) })
          .end(JSON.stringify({ service: { namespace: entry.namespace, name: entry.name }, localEndpoints: entry.localEndpoints, serviceProxyHealthy: true }));
      });
      try {
        await listen(server, this.bindAddress, port);
        entry.server = server;
      } catch (err) {
        this.logger.error({ err, port, service: `${d.namespace}/${d.name}` }, 'cannot serve healthCheckNodePort');
      }
    }
  }

  async close(): Promise<void> {
    for (const e of this.servers.values()) if (e.server) await close(e.server);
    this.servers.clear();
  }
}
