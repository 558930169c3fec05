/**
 * Scratch buffers: big buffers a process (or a worker thread) reuses from one piece of
 * work to the next (a join's segment reads, its joined rows), rather than a fresh one
 * each time. A fresh buffer costs the kernel a page fault per 4 KiB, and each one
 * dropped is external memory the collector is pressed to reclaim (on a batch-inference
 * reader thread, most of its mark-compacts were started by that pressure).
 */

/** A buffer reused by one caller's work, one piece after another; grown by `room`. */
export interface Scratch {
  buf?: Buffer;
}

/**
 * Scratches kept between pieces of work, each given back when its work is done. They
 * are dropped once none has been taken for SCRATCH_IDLE_MS, so that an idle worker
 * does not hold them.
 */
export class ScratchPool {
  private readonly free: Scratch[] = [];
  private timer: NodeJS.Timeout | undefined;

  /**
   * The free scratch with the largest buffer: work that needs one buffer, after work that
   * needed two, gets the one that already fits it, not the smaller one (which it would
   * grow, copying, while the larger one's memory waits unused).
   */
  take(): Scratch {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) if (best < 0 || bufferBytes(this.free[i]) > bufferBytes(this.free[best])) best = i;
    return best < 0 ? {} : (this.free.splice(best, 1)[0] as Scratch);
  }

  give(scratch: Scratch): void {
    this.free.push(scratch);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => (this.free.length = 0), SCRATCH_IDLE_MS).unref();
  }
}

const SCRATCH_IDLE_MS = 30_000;

const bufferBytes = (scratch: Scratch | undefined) => scratch?.buf?.length ?? 0;

/**
 * The scratch's buffer, grown to at least `bytes` (its first `keep` bytes kept), or a
 * buffer of its own when there is no scratch. It grows by a quarter at least, so that
 * work a little larger each time does not each time make a new one. Its own
 * ArrayBuffer, from offset 0: 8-aligned for typed arrays over it.
 */
export function room(scratch: Scratch | undefined, bytes: number, keep = 0): Buffer {
  if (!scratch) return Buffer.allocUnsafeSlow(bytes);
  const had = scratch.buf;
  if (had && had.length >= bytes) return had;
  const buf = Buffer.allocUnsafeSlow(Math.max(bytes, Math.ceil((had?.length ?? 0) * 1.25)));
  if (had && keep > 0) had.copy(buf, 0, 0, keep);
  scratch.buf = buf;
  return buf;
}
