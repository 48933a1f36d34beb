/**
 * Fast-path framing between the native shim (native/cni-shim) and podwired.
 *
 * Transport: HTTP/1.1 over the daemon's control unix socket (default
 * /run/podwire/podwire.sock, env PODWIRE_CONTROL_SOCKET), one request per connection.
 *
 *   POST /v1/cni HTTP/1.1
 *   Content-Type: application/x-podwire-cni
 *   Content-Length: N
 *
 *   body = ( "KEY=VALUE" NUL )*  NUL  stdin-bytes
 *
 * Only CNI_* variables are forwarded (the runtime's other environment is not the
 * daemon's business). The empty entry (a lone NUL) ends the list; everything after it
 * is the plugin's stdin, verbatim.
 *
 *   HTTP/1.1 200 OK
 *   X-CNI-Exit-Code: <0|1>
 *   Content-Length: M
 *
 *   body = exactly what the plugin prints on stdout
 *
 * Any non-200 status means the daemon did not run the command (malformed frame, 4xx;
 * overloaded/shutting down, 503): the shim then reports CNI error 11 "try again later",
 * never guessing whether the work happened.
 */
import { CniError, CniErrorCode } from '../errors';

export const FAST_PATH_ROUTE = '/v1/cni';
export const EXIT_CODE_HEADER = 'x-cni-exit-code';
export const CONTENT_TYPE = 'application/x-podwire-cni';
export const DEFAULT_CONTROL_SOCKET = '/run/podwire/podwire.sock';
const MAX_ENTRIES = 64;

export interface CniRequest {
  env: Record<string, string>;
  stdin: Buffer;
}

export function encodeRequest(req: CniRequest): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(req.env)) {
    if (!k.startsWith('CNI_')) continue;
    parts.push(Buffer.from(`${k}=${v}\0`, 'utf8'));
  }
  parts.push(Buffer.from([0]), req.stdin);
  return Buffer.concat(parts);
}

export function decodeRequest(body: Buffer): CniRequest {
  const env: Record<string, string> = {};
  let pos = 0;
  for (let n = 0; ; n++) {
    if (n > MAX_ENTRIES) throw new CniError(CniErrorCode.InvalidEnv, `fast-path request has more than ${MAX_ENTRIES} env entries`);
    const nul = body.indexOf(0, pos);
    if (nul < 0) throw new CniError(CniErrorCode.InvalidEnv, 'fast-path request: env list is not NUL-terminated');
    if (nul === pos) {
      pos++;
      break;
    }
    const entry = body.toString('utf8', pos, nul);
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new CniError(CniErrorCode.InvalidEnv, `fast-path request: env entry ${JSON.stringify(entry.slice(0, 64))} has no "="`);
    const key = entry.slice(0, eq);
    if (key.startsWith('CNI_')) env[key] = entry.slice(eq + 1);
    pos = nul + 1;
  }
  return { env, stdin: body.subarray(pos) };
}
