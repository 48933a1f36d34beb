import { AttrStream } from 'netlink/dist/structs'; // not the package index (see rt-structs.ts)

/** Runs one of the npm `netlink` schema formatters and returns its bytes. */
export function fromStream(fill: (out: AttrStream) => void): Buffer {
  const out = new AttrStream();
  fill(out);
  return Buffer.concat(out.bufs);
}
