/**
 * The daemon side of the fast path: a plain Node HTTP handler for POST /v1/cni that
 * decodes the frame (protocol.ts), runs the very same runCni as the in-process path
 * with the daemon's warm deps, and answers with the exit code in a header.
 */
import { performance } from 'node:perf_hooks';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { errorMessage } from '../../common/errors';
import type { CniDeps } from '../deps';
import { toCniErrorJson } from '../errors';
import { MAX_STDIN_BYTES, SNIFF_BYTES, requestTooLarge, sniffVersion } from '../limits';
import { runCni } from '../plugin';
import { CONTENT_TYPE, EXIT_CODE_HEADER, FAST_PATH_ROUTE, decodeRequest } from './protocol';

/**
 * Bodies up to the stdin limit plus room for the CNI_* entries are decoded, and runCni
 * itself refuses a stdin over MAX_STDIN_BYTES (code 108), exactly as on the in-process
 * path. A body over this is drained (the shim writes all of it before it reads) and
 * answered with the same code 108 here.
 */
const ENV_ALLOWANCE = 1 << 20;
const MAX_BODY = MAX_STDIN_BYTES + ENV_ALLOWANCE;

export type CniHttpHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function createCniFastPathHandler(deps: CniDeps): CniHttpHandler {
  return (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end('POST only\n');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (over) return; // drained, not kept
      if (size > MAX_BODY) {
        over = true;
        const all = Buffer.concat(chunks);
        chunks.length = 0;
        chunks.push(all.subarray(0, SNIFF_BYTES + ENV_ALLOWANCE)); // env + the head of stdin
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      if (over) {
        const head = chunks[0]!;
        const envEnd = endOfEnv(head);
        const stdinHead = envEnd < 0 ? Buffer.alloc(0) : head.subarray(envEnd);
        const err = requestTooLarge(envEnd < 0 ? size : size - envEnd);
        const body = JSON.stringify(toCniErrorJson(err, sniffVersion(stdinHead))) + '\n';
        deps.log.error({ bytes: size, limit: MAX_STDIN_BYTES }, 'fast-path CNI request too large');
        res.writeHead(200, { [EXIT_CODE_HEADER]: '1', 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(body, 'utf8') });
        res.end(body, 'utf8');
        return;
      }
      let request;
      try {
        request = decodeRequest(Buffer.concat(chunks));
      } catch (err) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`${errorMessage(err)}\n`);
        return;
      }
      const started = performance.now();
      runCni(request.env, request.stdin, deps).then(
        (out) => {
          deps.log.debug({ command: request.env.CNI_COMMAND, exitCode: out.exitCode, ms: +(performance.now() - started).toFixed(3) }, 'fast-path CNI request');
          // A string body (not a Buffer): Node then sends head and body in one write(2)
          // instead of a corked writev of two chunks.
          const body = out.stdout === '' ? '' : out.stdout + '\n';
          res.writeHead(200, { [EXIT_CODE_HEADER]: String(out.exitCode), 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(body, 'utf8') });
          res.end(body, 'utf8');
        },
        (err: unknown) => {
          deps.log.error({ err: errorMessage(err) }, 'fast-path CNI request failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`${errorMessage(err)}\n`);
        },
      );
    });
  };
}

/** Offset of stdin in a frame (just past the NUL that ends the env list), -1 if not in `head`. */
function endOfEnv(head: Buffer): number {
  let pos = 0;
  for (;;) {
    const nul = head.indexOf(0, pos);
    if (nul < 0) return -1;
    if (nul === pos) return nul + 1;
    pos = nul + 1;
  }
}

/**
 * A minimal server mounting only the CNI route (tests, bench, and a standalone
 * `podwired`-less deployment). The daemon mounts the handler on its own control server.
 */
export function createCniFastPathServer(deps: CniDeps): Server {
  const handler = createCniFastPathHandler(deps);
  return createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] === FAST_PATH_ROUTE) handler(req, res);
    else res.writeHead(404).end('not found\n');
  });
}
