/** One A query over UDP, for the dns check (a dozen lines of the wire format src/dns already speaks). */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { wire } from '../dns';

export function dnsQueryUdp(server: string, port: number, name: string, timeoutMs = 2000): Promise<{ rcode: string; addresses: string[] } | { error: string }> {
  const id = Math.floor(Math.random() * 0xffff);
  const header = Buffer.alloc(wire.HEADER_LEN);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(wire.TYPE.A, 0);
  tail.writeUInt16BE(wire.CLASS_IN, 2);
  const query = Buffer.concat([header, wire.encodeName(name), tail]);
  const sock = dgram.createSocket(isIPv6(server) ? 'udp6' : 'udp4');
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: { rcode: string; addresses: string[] } | { error: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    sock.on('error', (err) => finish({ error: err.message }));
    sock.on('message', (msg) => {
      if (msg.length < wire.HEADER_LEN || msg.readUInt16BE(0) !== id) return;
      const an = msg.readUInt16BE(6);
      let p = wire.skipName(msg, wire.HEADER_LEN) + 4;
      const addresses: string[] = [];
      for (let i = 0; i < an && p >= 4 && p + 10 <= msg.length; i++) {
        p = wire.skipName(msg, p);
        if (p < 0) break;
        const type = msg.readUInt16BE(p);
        const len = msg.readUInt16BE(p + 8);
        if (type === wire.TYPE.A && len === 4) addresses.push([...msg.subarray(p + 10, p + 14)].join('.'));
        p += 10 + len;
      }
      finish({ rcode: wire.RCODE_NAMES[wire.rcodeOf(msg)] ?? String(wire.rcodeOf(msg)), addresses });
    });
    sock.send(query, port, server, (err) => {
      if (err) finish({ error: err.message });
    });
  });
}
