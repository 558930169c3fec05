/**
 * A thread of this process's own that reads spine rows from segment files beside the
 * main thread (spine-thread.ts): the stream plan's spine step reads every other file of
 * a pass's window there (pit-stream.ts spinesOnThreads). On two cores that step kept one
 * busy and left the other idle, while its output, a chunk's spine, is plain bytes and
 * typed arrays that move between threads without a copy.
 *
 * One thread for the process, started at its first use and kept (it holds no memory
 * between reads but its idle scratch buffers, dropped after a while: core/scratch.ts);
 * it does not keep the process alive. None on a machine of one core.
 */
import os from 'node:os';
import type { Worker } from 'node:worker_threads';
import { rebuildError, startThread, type SerializedError } from '../../core/threads.ts';
import type { PostedSpine, SegmentRowLayout } from './spine-rows.ts';
import type { SpineFiles } from './spine-segments.ts';

export interface SpineThreadRequest {
  job: number;
  files: SpineFiles;
  /** The chunks whose rows it keeps (of `files.count`). */
  chunks: number[];
  layout: SegmentRowLayout;
}

/**
 * 'done': each chunk's spine (in the order asked), its keys' ids those of the thread
 * (`keyTexts[join][id]`); 'missing': a file could not be read whole (its rows are read
 * otherwise); 'error': the read failed.
 */
export type SpineThreadReply =
  | { type: 'done'; job: number; spines: PostedSpine[]; keyTexts: string[][] }
  | { type: 'missing'; job: number }
  | { type: 'error'; job: number; error: SerializedError };

/** What a read on the spine thread gave: the chunks' spines and their key texts, or undefined when a file was missing or the thread went away. */
export type SpineThreadResult = Extract<SpineThreadReply, { type: 'done' }> | undefined;

class SpineThread {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (r: SpineThreadResult) => void; reject: (e: Error) => void }>();
  private next = 0;

  constructor(private readonly onGone: (gone: SpineThread) => void) {
    this.worker = startThread(new URL('./spine-thread.ts', import.meta.url), null);
    this.worker.on('message', (reply: SpineThreadReply) => {
      const waiter = this.waiting.get(reply.job);
      this.waiting.delete(reply.job);
      if (this.waiting.size === 0) this.worker.unref();
      if (reply.type === 'done') readsDone++;
      if (reply.type === 'error') waiter?.reject(rebuildError(reply.error));
      else waiter?.resolve(reply.type === 'done' ? reply : undefined);
    });
    // A thread that failed or ended: its reads are done on the main thread, and the next pass starts another.
    const gone = () => {
      this.onGone(this);
      for (const waiter of this.waiting.values()) waiter.resolve(undefined);
      this.waiting.clear();
    };
    this.worker.on('error', gone);
    this.worker.on('exit', gone);
    // Idle, the thread does not keep the process alive (after its listeners: adding one refs it again).
    this.worker.unref();
  }

  read(request: Omit<SpineThreadRequest, 'job'>): Promise<SpineThreadResult> {
    const job = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(job, { resolve, reject });
      // While a read is in flight its reply is awaited: the thread keeps the process alive.
      this.worker.ref();
      this.worker.postMessage({ ...request, job } satisfies SpineThreadRequest);
    });
  }
}

let thread: SpineThread | undefined;

/** Reads this process's spine threads have done whole ('done' replies): what a test checks to know the thread was used. */
let readsDone = 0;

export function spineThreadReads(): number {
  return readsDone;
}

/** The process's spine thread (started now if need be); undefined on a machine of one core. */
export function spineThread(): SpineThread | undefined {
  if (os.availableParallelism() < 2) return undefined;
  thread ??= new SpineThread((gone) => {
    if (thread === gone) thread = undefined;
  });
  return thread;
}
