/**
 * One ICMP echo through the `raw-socket` addon. raw-socket 1.8.1 pins nan 2.19, which does not
 * compile against Node 24's V8 (Isolate::IdleNotificationDeadline, ObjectTemplate::SetAccessor
 * are gone); package.json overrides nan to 2.30, with which it builds unchanged, and
 * scripts/build-native.js builds it against the running Node's headers. When the addon is not
 * built, `ping -c1` (iputils) answers instead and the finding says so.
 */
import { isIPv6 } from 'node:net';

interface RawSocket {
  on(ev: 'message', cb: (buf: Buffer, source: string) => void): void;
  on(ev: 'error', cb: (err: Error) => void): void;
  send(buf: Buffer, offset: number, length: number, address: string, cb: (err: Error | null) => void): void;
  close(): void;
}
interface RawModule {
  createSocket(opts: { protocol: number; addressFamily?: number }): RawSocket;
  createChecksum(...bufs: Buffer[]): number;
  writeChecksum(buf: Buffer, offset: number, sum: number): void;
  Protocol: { ICMP: number; ICMPv6: number };
  AddressFamily: { IPv4: number; IPv6: number };
}

let loaded: RawModule | Error | undefined;
export function rawSocket(): RawModule | Error {
  if (loaded === undefined) {
    try {
      loaded = require('raw-socket') as RawModule; // eslint-disable-line @typescript-eslint/no-require-imports -- optional native addon
    } catch (err) {
      loaded = err instanceof Error ? err : new Error(String(err));
    }
  }
  return loaded;
}

let seq = 0;

/** One echo request, waiting at most timeoutMs for the matching reply. */
export function icmpEcho(raw: RawModule, address: string, timeoutMs = 1000): Promise<{ ok: boolean; detail: string }> {
  const v6 = isIPv6(address);
  const id = process.pid & 0xffff;
  const s = ++seq & 0xffff;
  const pkt = Buffer.alloc(16);
  pkt[0] = v6 ? 128 : 8;
  pkt.writeUInt16BE(id, 4);
  pkt.writeUInt16BE(s, 6);
  pkt.write('podwire!', 8);
  // ICMPv6's checksum covers a pseudo-header the kernel fills in for raw ICMPv6 sockets.
  if (!v6) raw.writeChecksum(pkt, 2, raw.createChecksum(pkt));
  const sock = raw.createSocket(v6 ? { protocol: raw.Protocol.ICMPv6, addressFamily: raw.AddressFamily.IPv6 } : { protocol: raw.Protocol.ICMP });
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: { ok: boolean; detail: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `no echo reply within ${timeoutMs} ms` }), timeoutMs);
    sock.on('error', (err) => finish({ ok: false, detail: err.message }));
    sock.on('message', (buf, source) => {
      // IPv4 raw sockets deliver the IP header; IPv6 ones do not.
      const off = v6 ? 0 : (buf[0]! & 0x0f) * 4;
      if (source !== address || buf.length < off + 8) return;
      if (buf[off] !== (v6 ? 129 : 0) || buf.readUInt16BE(off + 4) !== id || buf.readUInt16BE(off + 6) !== s) return;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      finish({ ok: true, detail: `echo reply in ${ms.toFixed(1)} ms` });
    });
    sock.send(pkt, 0, pkt.length, address, (err) => {
      if (err) finish({ ok: false, detail: `send: ${err.message}` });
    });
  });
}
