/**
 * The servers `podwire lab up` runs inside pods (one process per pod, run with the project's Node):
 *
 *   node dist/src/lab/server.js --name web-0 [--http PORT]... [--udp-echo PORT]...
 *
 * HTTP answers every request with `server <name> <local address> <method> <url> from <client address>` (so a client can tell which
 * endpoint answered, e.g. through a Service); the UDP echo sends each datagram back. Prints one
 * `listening ...` line per socket. Exits on SIGTERM.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { name: { type: 'string' }, http: { type: 'string', multiple: true }, 'udp-echo': { type: 'string', multiple: true } },
  strict: true,
});
const name = values.name ?? 'pod';
for (const p of values.http ?? []) {
  const srv = createServer((req, res) => {
    const body = `server ${name} ${req.socket.localAddress ?? '?'} ${req.method ?? ''} ${req.url ?? ''} from ${req.socket.remoteAddress ?? '?'}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  });
  srv.listen(Number(p), '0.0.0.0', () => process.stdout.write(`listening http 0.0.0.0:${p}\n`));
}
for (const p of values['udp-echo'] ?? []) {
  const sock = createSocket('udp4');
  sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
  sock.bind(Number(p), '0.0.0.0', () => process.stdout.write(`listening udp-echo 0.0.0.0:${p}\n`));
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
