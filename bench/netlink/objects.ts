/**
 * The benchmark's object set, the same as the anchor (shared/anchors/cni/route-fdb-bench.sh):
 * for i in 0..n-1 with a = i>>8 & 255, b = i & 255:
 *   route  10.a.b.0/24 via 198.18.0.2 dev rt0 onlink proto static
 *   fdb    02:cb:00:(i>>16):a:b dev vxlan0 dst 198.19.a.b self permanent
 *   neigh  10.a.b.0 lladdr 02:cb:00:(i>>16):a:b dev vxlan0 nud permanent
 */
export type Kind = 'route' | 'fdb' | 'neigh';
export const KINDS: readonly Kind[] = ['route', 'fdb', 'neigh'];

export interface ObjectSet {
  n: number;
  /** 10.a.b.0 */
  dsts: Uint32Array;
  /** 198.19.a.b */
  vteps: Uint32Array;
  /** 6 bytes per object */
  macs: Buffer;
}

export function objectSet(n: number): ObjectSet {
  const dsts = new Uint32Array(n);
  const vteps = new Uint32Array(n);
  const macs = Buffer.alloc(6 * n);
  for (let i = 0; i < n; i++) {
    const a = (i >> 8) & 255;
    const b = i & 255;
    dsts[i] = ((10 << 24) | (a << 16) | (b << 8)) >>> 0;
    vteps[i] = ((198 << 24) | (19 << 16) | (a << 8) | b) >>> 0;
    macs.set([0x02, 0xcb, 0x00, (i >> 16) & 255, a, b], 6 * i);
  }
  return { n, dsts, vteps, macs };
}

export function ipText(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export function macText(macs: Buffer, i: number): string {
  return [...macs.subarray(6 * i, 6 * i + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
