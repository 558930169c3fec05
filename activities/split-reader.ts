/**
 * A training run's batches read on a thread of their own, so reading overlaps training.
 *
 * Reading a split (binary COPY out of Postgres, decoding rows, the shuffle buffer,
 * encoding into Float32Arrays) cost ~8 µs a row on the main thread, about as much as
 * the WASM training step it fed (64-32 MLP, batch 512): one after the other, a core
 * trained half the time. Here a worker thread runs the very same pipeline
 * (splitBatches) over a connection of its own and hands each batch over without a copy
 * (the arrays' buffers are transferred), a few batches ahead, while the main thread
 * trains. The batches and their order are those of the main-thread pipeline.
 *
 * One thread per training run, one pass at a time (the train split, then validation,
 * then the next epoch's train split). A pass the trainer abandons (a stop mid-epoch) is
 * cancelled, which closes its cursor in the thread. An error in the thread fails the
 * pass with the same message and, for an FtiError, the same failure type.
 */
import type { Worker } from 'node:worker_threads';
import type { Batch } from '../ml/batches.ts';
import type { ModelSignature } from '../ml/signature.ts';
import type { Split } from '../registry/training/index.ts';
import { startThread, type SerializedError } from '../core/threads.ts';
import { creditedBatches } from './threads.ts';

/** What the thread needs to read a dataset's splits as the main thread would. */
export interface SplitReaderSource {
  /** A connection string the thread opens its own pool with (the worker's role). */
  url: string;
  schema: string;
  trainingDatasetId: number;
  /** Encodes rows into batches (createEncoder). */
  signature: ModelSignature;
  batchSize: number;
  /** Bytes of encoded rows the thread may keep for the epochs after the first (EpochCache); 0: none. */
  epochCacheBytes: number;
}

/** Main thread → reader thread. */
export type ReaderRequest =
  | { type: 'pass'; pass: number; split: Split; epoch: number; shuffle: boolean }
  | { type: 'credit'; pass: number; batches: number }
  | { type: 'cancel'; pass: number }
  /** Stop reading, close the pool, end the thread. */
  | { type: 'close' };

/** Reader thread → main thread. */
export type ReaderReply =
  | { type: 'batch'; pass: number; x: Float32Array; y: Float32Array; size: number }
  | { type: 'end'; pass: number }
  | { type: 'error'; pass: number; error: SerializedError };

/** Batches requested ahead of the trainer: enough to ride out a slow stretch of reading (a COPY chunk, a merge of partitions), few enough to stay small in memory (~2 MB at the flights width and batch 512). */
const BATCHES_AHEAD = 16;
/** How long close() lets the thread close its pool before terminating it. */
const CLOSE_WAIT_MS = 5000;

export class SplitReader {
  private readonly worker: Worker;
  private passes = 0;
  /** Replies of the pass being read (the latest), and the trainer's wait for the next one. */
  private queue: ReaderReply[] = [];
  private waiting: { resolve: () => void } | undefined;
  private failure: Error | undefined;
  private closed = false;

  constructor(source: SplitReaderSource) {
    this.worker = startThread(new URL('./split-reader-thread.ts', import.meta.url), source);
    this.worker.on('message', (reply: ReaderReply) => this.push(reply));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`the split reader thread exited (code ${code})`)));
  }

  /** One pass over a split, as splitBatches(...)(epoch) yields it. */
  async *batches(split: Split, epoch: number, shuffle: boolean): AsyncGenerator<Batch, void, undefined> {
    const pass = ++this.passes;
    this.queue = [];
    this.post({ type: 'pass', pass, split, epoch, shuffle });
    const replies = creditedBatches<Extract<ReaderReply, { type: 'batch' }>>(
      () => this.next(),
      (batches) => this.post({ type: 'credit', pass, batches }),
      () => this.post({ type: 'cancel', pass }),
      BATCHES_AHEAD,
    );
    for await (const reply of replies) yield { x: reply.x, y: reply.y, size: reply.size };
  }

  /** Ends the thread once it has closed its cursors and pool (or after CLOSE_WAIT_MS, by terminating it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.worker.postMessage({ type: 'close' } satisfies ReaderRequest);
    this.closed = true;
    const exited = new Promise<boolean>((resolve) => this.worker.once('exit', () => resolve(true)));
    const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), CLOSE_WAIT_MS).unref());
    if (!(await Promise.race([exited, timer]))) await this.worker.terminate();
  }

  private post(request: ReaderRequest): void {
    if (!this.closed) this.worker.postMessage(request);
  }

  /** The current pass's next reply (push() keeps no other pass's). */
  private async next(): Promise<ReaderReply> {
    for (;;) {
      const reply = this.queue.shift();
      if (reply) return reply;
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.waiting = { resolve }));
    }
  }

  private push(reply: ReaderReply): void {
    // Replies of a cancelled pass still in flight are dropped.
    if (reply.pass !== this.passes) return;
    this.queue.push(reply);
    this.wake();
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.failure ??= err;
    this.wake();
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve();
  }
}
