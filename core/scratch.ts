/**
 * Scratch buffers: big buffers a process (or a worker thread) reuses from one piece of
 * work to the next (a join's segment reads, its joined rows), rather than a fresh one
 * each time. A fresh buffer costs the kernel a page fault per 4 KiB, and each one
 * dropped is external memory the collector is pressed to reclaim (on a batch-inference
 * reader thread, most of its mark-compacts were started by that pressure).
 */
import fs from 'node:fs';

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

/**
 * The scratch's buffer grown to at least `bytes` (as room does), and `ready`: resolved
 * once a buffer made now has every page faulted in, by a read of /dev/zero on libuv's
 * thread pool (on Linux), not by this thread's first writes. A dataset build's
 * joined rows (some 430 MB for 3M rows) take about 0.25 s of faults; made after the spine
 * is read, this buffer's pages are faulted on the other core while this thread sorts the
 * spine's places. Nothing may write to the buffer before `ready` resolves: the read writes
 * zeros into it until then. Never rejects (a buffer not faulted in is still a buffer).
 */
export function faultedRoom(scratch: Scratch, bytes: number): { buf: Buffer; ready: Promise<void> } {
  const had = scratch.buf;
  const buf = room(scratch, bytes);
  return { buf, ready: buf === had || process.platform !== 'linux' ? Promise.resolve() : faultIn(buf).catch(() => undefined) };
}

/**
 * Reads /dev/zero into the whole of `buf`: one read (one task of the thread pool), again
 * for what it did not fill. Opened here, at once: an open on the thread pool would wait
 * for this thread to issue the read, and this thread is about to be busy.
 */
async function faultIn(buf: Buffer): Promise<void> {
  const fd = fs.openSync('/dev/zero', 'r');
  try {
    for (let at = 0; at < buf.length; ) {
      const bytesRead = await new Promise<number>((resolve, reject) => fs.read(fd, buf, at, buf.length - at, null, (err, n) => (err ? reject(err) : resolve(n))));
      if (bytesRead === 0) return;
      at += bytesRead;
    }
  } finally {
    fs.closeSync(fd);
  }
}
