/**
 * Batch inference's feature reads on threads of their own, so that reading a
 * partition's rows and scoring them use both cores.
 *
 * A partition's read by the stream plan (the spine's binary COPY, the joined groups'
 * segments, the join, decoding into typed columns) is JavaScript work, about half of
 * a partition's: on the worker's one thread, with the scoring and the predictions'
 * COPY beside it, one core ran JavaScript and the other mostly waited. Here a pool of
 * threads, each with a pool of connections of its own (the worker's URL, so its role),
 * runs the very same read (streamViewBatches) and hands each batch over as it is
 * decoded, its typed arrays transferred rather than copied, a few batches ahead of
 * the scoring. The rows and their order are the main thread's. Once a batch is written,
 * its arrays go back to its thread to be filled again (ColumnBatch.release), so that
 * neither side allocates arrays per batch nor collects garbage to free them.
 *
 * The threads live as long as the worker process (each takes about a second to load
 * its modules, too long to pay per partition) and do not keep it alive while idle. A
 * thread runs any number of reads at once; a read goes to the thread with the fewest.
 * A read the caller abandons (a cancelled activity) is cancelled in its thread, which
 * closes its COPY; an error there fails the read with the same message and, for an
 * FtiError, the same failure type. A thread that dies fails its reads, and the next
 * read starts another.
 */
import type { Worker } from 'node:worker_threads';
import { numberBuffers, type ColumnBatch } from '../core/columns.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import type { PitPlan, ViewSnapshot } from '../registry/feature-store/index.ts';
import { startThread, type SerializedError } from '../core/threads.ts';
import { creditedBatches } from './threads.ts';

/** One partition's read: streamViewBatches' arguments. */
export interface FeatureRead {
  view: FeatureViewDefinition;
  snapshot: ViewSnapshot;
  start: Date;
  end: Date;
  strategy: PitPlan;
  batchSize?: number;
}

/** Main thread → reader thread. */
export type FeatureReaderRequest =
  | { type: 'read'; job: number; read: FeatureRead }
  | { type: 'credit'; job: number; batches: number }
  | { type: 'cancel'; job: number }
  /** A written batch's number buffers (numberBuffers, `rows` long), moved back to be filled again. */
  | { type: 'recycle'; buffers: ArrayBuffer[]; rows: number }
  /** Cancel every read, close the pool, end the thread. */
  | { type: 'close' };

/** Reader thread → main thread. */
export type FeatureReaderReply = { type: 'batch'; job: number; batch: ColumnBatch } | { type: 'end'; job: number } | { type: 'error'; job: number; error: SerializedError };

/** Where a reader thread opens its pool. */
export interface FeatureReaderSource {
  url: string;
  schema: string;
}

/** Batches decoded ahead of the scoring: a few MB at the flights width and 8,192 rows a batch. */
const BATCHES_AHEAD = 4;
/** How long close() lets a thread close its pool before terminating it. */
const CLOSE_WAIT_MS = 5000;

/** A read's replies as they arrive, and its consumer's wait for the next. */
class Job {
  private readonly queue: FeatureReaderReply[] = [];
  private waiting: (() => void) | undefined;
  private failure: unknown;
  private failed = false;

  push(reply: FeatureReaderReply): void {
    this.queue.push(reply);
    this.wake();
  }

  fail(err: unknown): void {
    if (!this.failed) [this.failed, this.failure] = [true, err];
    this.wake();
  }

  async next(): Promise<FeatureReaderReply> {
    for (;;) {
      if (this.failed) throw this.failure;
      const reply = this.queue.shift();
      if (reply) return reply;
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.();
  }
}

class ReaderThread {
  readonly worker: Worker;
  readonly jobs = new Map<number, Job>();
  dead = false;

  constructor(source: FeatureReaderSource) {
    this.worker = startThread(new URL('./feature-reader-thread.ts', import.meta.url), source);
    // Idle, it does not keep the process alive; a read refs it (see use()).
    this.worker.unref();
    this.worker.on('message', (reply: FeatureReaderReply) => this.jobs.get(reply.job)?.push(reply));
    this.worker.on('error', (err) => this.die(err));
    this.worker.on('exit', (code) => this.die(new Error(`a feature reader thread exited (code ${code})`)));
  }

  post(request: FeatureReaderRequest, transfer: ArrayBuffer[] = []): void {
    if (!this.dead) this.worker.postMessage(request, transfer);
  }

  use(job: number, state: Job): void {
    if (this.jobs.size === 0) this.worker.ref();
    this.jobs.set(job, state);
  }

  release(job: number): void {
    this.jobs.delete(job);
    if (this.jobs.size === 0) this.worker.unref();
  }

  private die(err: Error): void {
    this.dead = true;
    for (const job of this.jobs.values()) job.fail(err);
  }
}

export class FeatureReaders {
  private threads: ReaderThread[] = [];
  private jobs = 0;
  private closed = false;

  /** `size` threads at most, started as reads need them (or by warm()). */
  constructor(
    private readonly source: FeatureReaderSource,
    readonly size: number,
  ) {
    if (!(size >= 1)) throw new Error(`FeatureReaders needs at least one thread (got ${size})`);
  }

  /** Starts the threads now, so that the reads about to come need not wait for them to load. */
  warm(): void {
    this.prune();
    while (!this.closed && this.threads.length < this.size) this.threads.push(new ReaderThread(this.source));
  }

  /** A partition's rows, as streamViewBatches yields them, read on a thread. */
  async *batches(read: FeatureRead, signal?: AbortSignal): AsyncGenerator<ColumnBatch, void, undefined> {
    if (this.closed) throw new Error('the feature readers are closed');
    signal?.throwIfAborted();
    const thread = this.pick();
    const job = ++this.jobs;
    const state = new Job();
    thread.use(job, state);
    const onAbort = () => state.fail(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      thread.post({ type: 'read', job, read });
      const replies = creditedBatches<Extract<FeatureReaderReply, { type: 'batch' }>>(
        () => state.next(),
        (batches) => thread.post({ type: 'credit', job, batches }),
        () => thread.post({ type: 'cancel', job }),
        BATCHES_AHEAD,
      );
      for await (const { batch } of replies) {
        // Once written, its arrays go back to the thread for a later batch.
        batch.release = () => {
          batch.release = undefined;
          const buffers = numberBuffers(batch);
          thread.post({ type: 'recycle', buffers, rows: batch.size }, buffers);
        };
        yield batch;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      thread.release(job);
    }
  }

  /** Ends the threads once they have closed their reads and pools (or after CLOSE_WAIT_MS, by terminating them). */
  async close(): Promise<void> {
    this.closed = true;
    const threads = this.threads;
    this.threads = [];
    await Promise.all(
      threads.map(async (thread) => {
        if (thread.dead) return;
        const exited = new Promise<boolean>((resolve) => thread.worker.once('exit', () => resolve(true)));
        thread.post({ type: 'close' });
        const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), CLOSE_WAIT_MS).unref());
        if (!(await Promise.race([exited, timer]))) await thread.worker.terminate();
      }),
    );
  }

  /** The live thread with the fewest reads, starting another while there are fewer than `size` and all are busy. */
  private pick(): ReaderThread {
    this.prune();
    const idle = this.threads.find((t) => t.jobs.size === 0);
    if (idle) return idle;
    if (this.threads.length < this.size) {
      const thread = new ReaderThread(this.source);
      this.threads.push(thread);
      return thread;
    }
    return this.threads.reduce((least, t) => (t.jobs.size < least.jobs.size ? t : least));
  }

  private prune(): void {
    this.threads = this.threads.filter((t) => !t.dead);
  }
}
