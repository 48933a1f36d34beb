import { KernelError } from '../../common/errors';
import { describeErrno } from '../errno';
import type { NetlinkTransport } from '../netlink/transport';

/**
 * A NetlinkTransport that records what it is sent and answers from handlers, for
 * unit tests of the encoders and of NetlinkNetworkKernel without a kernel.
 */
export class FakeTransport implements NetlinkTransport {
  readonly requests: Buffer[] = [];
  readonly batches: Buffer[][] = [];
  /** Reply for request(): messages to return, or an errno to reject with. */
  onRequest: (msg: Buffer) => Buffer[] | number = () => [];
  /** errno per batch message (0 = ok). */
  onBatch: (msg: Buffer, index: number) => number = () => 0;
  closed = false;

  async request(message: Buffer): Promise<Buffer[]> {
    this.requests.push(Buffer.from(message));
    const r = this.onRequest(message);
    if (typeof r === 'number') throw new KernelError('netlink', describeErrno(r), { errno: r });
    return r;
  }

  async batch(messages: readonly Buffer[]): Promise<Int32Array> {
    this.batches.push(messages.map((m) => Buffer.from(m)));
    return Int32Array.from(messages.map((m, i) => this.onBatch(m, i)));
  }

  close(): void {
    this.closed = true;
  }
}
