/**
 * What the proxy should have programmed on this node, derived from the cluster state's
 * Service list (not from what the proxier last applied), for `podwire doctor`: served on the
 * control socket as `GET /v1/proxy/services`. A Service that podwired never programmed (a
 * failed or lost apply, a bug in the change tracking) is in this list but not in the kernel;
 * a count kept by the proxier itself could not show that.
 *
 * Compact, to scale to 10,000 Services: one array per address and port the kernel must match
 * (`[namespace/name, kind, family, address, protocol, port]`), about 60 bytes each (1 MB and
 * about 20 ms of podwired's event loop for 10,000 two-port Services, per doctor run). The same
 * filter as the proxiers (buildServiceModel: headless, ExternalName and service-proxy-name
 * Services are skipped, invalid ones counted), without endpoints: the doctor checks that each
 * Service's addresses are programmed, not how they are balanced.
 */
import type http from 'node:http';
import type { ControlMount } from '../daemon/component';
import type { ClusterState } from '../k8s/types';
import { buildServiceModel, type Family, type L4 } from './model';

export const EXPECTED_ROUTE = '/v1/proxy/services';

/** c: ClusterIP, x: externalIP, l: LoadBalancer ingress IP, n: NodePort (address ''). */
export type ExpectedKind = 'c' | 'x' | 'l' | 'n';

/** `[namespace/name, kind, family, address, protocol, port]`. */
export type ExpectedEntry = [service: string, kind: ExpectedKind, family: Family, address: string, protocol: L4, port: number];

export interface ExpectedServices {
  mode: 'nftables' | 'iptables' | 'ipvs';
  /** The IP families this node's proxy programs; Services' other families are not listed. */
  families: Family[];
  /** nftables mode: our table, `inet podwire`. */
  table?: string;
  /** iptables mode: the binaries the proxy uses (the doctor reads the same ruleset back). */
  iptablesBackend?: 'legacy' | 'nft';
  /** Services with at least one entry. */
  services: number;
  /** Not proxied by design (headless, ExternalName, service-proxy-name label, only other families). */
  skipped: number;
  /** Rejected as invalid (podwire status lists why). */
  invalid: number;
  /** Service and EndpointSlice changes the proxier has not applied yet (a just-created Service is missing until then). */
  pending: number;
  entries: ExpectedEntry[];
}

export type ExpectedInfo = Omit<ExpectedServices, 'services' | 'skipped' | 'invalid' | 'entries'>;

/** The entries of every Service that should be proxied, from the cluster state. */
export function expectedServices(state: Pick<ClusterState, 'values'>, nodeName: string, info: ExpectedInfo): ExpectedServices {
  const served = new Set(info.families);
  const entries: ExpectedEntry[] = [];
  let services = 0;
  let skipped = 0;
  let invalid = 0;
  for (const svc of state.values('Service')) {
    const m = buildServiceModel(svc, [], nodeName);
    if (m.invalid) {
      invalid++;
      continue;
    }
    const before = entries.length;
    const seen = new Set<string>();
    const add = (kind: ExpectedKind, family: Family, address: string, protocol: L4, port: number): void => {
      // An address listed twice (externalIP and LB IP, or equal to the ClusterIP) is one key in the kernel.
      const k = `${family}|${kind === 'n' ? 'n' : ''}|${address}|${protocol}|${port}`;
      if (seen.has(k)) return;
      seen.add(k);
      entries.push([m.key, kind, family, address, protocol, port]);
    };
    for (const p of m.ports) {
      if (!served.has(p.family)) continue;
      add('c', p.family, p.clusterIP, p.protocol, p.port);
      for (const ip of p.externalIPs) add('x', p.family, ip, p.protocol, p.port);
      for (const ip of p.loadBalancerIPs) add('l', p.family, ip, p.protocol, p.port);
      if (p.nodePort !== undefined) add('n', p.family, '', p.protocol, p.nodePort);
    }
    if (entries.length > before) services++;
    else skipped++;
  }
  return { ...info, services, skipped, invalid, entries };
}

/**
 * Mounts `GET /v1/proxy/services` on the control socket (in a proxier's start); returns the
 * unmount function, or undefined without a control socket (unit tests).
 */
export function mountExpectedRoute(control: ControlMount | undefined, state: Pick<ClusterState, 'values'>, nodeName: string, info: () => ExpectedInfo): (() => void) | undefined {
  if (!control) return undefined;
  return control.routeRaw(EXPECTED_ROUTE, (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET', 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'PW_METHOD', message: `${req.method ?? '?'} not allowed on ${EXPECTED_ROUTE}` } }) + '\n');
      return;
    }
    const body = JSON.stringify(expectedServices(state, nodeName, info())) + '\n';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}
