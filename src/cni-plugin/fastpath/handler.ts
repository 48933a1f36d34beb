/**
 * The daemon side of the fast path: a plain Node HTTP handler for POST /v1/cni that
 * decodes the frame (protocol.ts), runs the very same runCni as the in-process path
 * with the daemon's warm deps, and answers with the exit code in a header.
 */
import { performance } from 'node:perf_hooks';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { errorMessage } from '../../common/errors';
import type { CniDeps } from '../deps';
import { runCni } from '../plugin';
import { CONTENT_TYPE, EXIT_CODE_HEADER, FAST_PATH_ROUTE, decodeRequest } from './protocol';

const MAX_BODY = 4 << 20;

export type CniHttpHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function createCniFastPathHandler(deps: CniDeps): CniHttpHandler {
  return (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' }).end('POST only\n');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        res.writeHead(413).end('request too large\n');
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
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
