/**
 * Dynamic batching, as TF Serving and Triton do it: the items of concurrent calls are
 * run as one call. Per request, the server's fixed costs are a database round trip and
 * a model call; under load, one of each now serves every request that arrived together.
 *
 * No timer: a batch closes when the event loop has handled the requests already
 * received (setImmediate runs after the I/O phase that delivered them), or as soon as
 * `maxItems` are waiting. A lone request waits for nothing. While `maxInFlight`
 * batches run, new items wait and join the next one, so the batches grow with the load
 * instead of the number of calls.
 */
import { performance } from 'node:perf_hooks';

interface Waiting<T, R> {
  items: readonly T[];
  /** performance.now() at submit. */
  since: number;
  resolve(results: R[]): void;
  reject(err: unknown): void;
}

export interface DynamicBatcherOptions {
  /** A batch never holds more items than this (a call with more runs alone). */
  maxItems: number;
  /** Batches run at the same time (default 1). */
  maxInFlight?: number;
  /** Called with each batch's size as it starts (for metrics). */
  onBatch?: (items: number, calls: number) => void;
  /** Called as each batch settles (for metrics): how long its oldest call waited for it to start, and how long it ran. */
  onSettled?: (timing: BatchTiming) => void;
}

export interface BatchTiming {
  /** From the oldest call's submit to the batch's start: the wait for the batch to close or for a batch in flight. */
  waitSeconds: number;
  /** The batched call itself. */
  runSeconds: number;
}

export class DynamicBatcher<T, R> {
  private waiting: Array<Waiting<T, R>> = [];
  private waitingItems = 0;
  private inFlight = 0;
  private scheduled = false;

  /** `run` answers one result per item, in order. */
  constructor(
    private readonly run: (items: readonly T[]) => Promise<R[]>,
    private readonly options: DynamicBatcherOptions,
  ) {}

  /** The results of `items`, in order, from the batch they ran in. */
  submit(items: readonly T[]): Promise<R[]> {
    if (items.length === 0) return Promise.resolve([]);
    return new Promise<R[]>((resolve, reject) => {
      if (this.waitingItems + items.length > this.options.maxItems) this.start();
      this.waiting.push({ items, since: performance.now(), resolve, reject });
      this.waitingItems += items.length;
      if (this.waitingItems >= this.options.maxItems) this.start();
      else this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.inFlight < (this.options.maxInFlight ?? 1)) this.start();
    });
  }

  /** Runs what is waiting as one batch (even past maxInFlight: a full batch does not wait). */
  private start(): void {
    const batch = this.waiting;
    if (batch.length === 0) return;
    this.waiting = [];
    this.waitingItems = 0;
    // A lone call (most batches, unless requests arrive in the same turn of the event loop) runs on its own items and gets the results as they come.
    const items = batch.length === 1 ? (batch[0] as Waiting<T, R>).items : batch.flatMap((w) => w.items);
    this.options.onBatch?.(items.length, batch.length);
    this.inFlight++;
    const started = performance.now();
    const waitSeconds = (started - (batch[0] as Waiting<T, R>).since) / 1000;
    this.run(items).then(
      (results) => {
        this.settle(started, waitSeconds);
        if (results.length !== items.length) {
          const err = new Error(`a batched call answered ${results.length} results for ${items.length} items`);
          for (const w of batch) w.reject(err);
          return;
        }
        if (batch.length === 1) return (batch[0] as Waiting<T, R>).resolve(results);
        let offset = 0;
        for (const w of batch) {
          w.resolve(results.slice(offset, offset + w.items.length));
          offset += w.items.length;
        }
      },
      (err: unknown) => {
        this.settle(started, waitSeconds);
        for (const w of batch) w.reject(err);
      },
    );
  }

  /** A batch that started at `started` (performance.now()) has settled. */
  private settle(started: number, waitSeconds: number): void {
    this.inFlight--;
    this.options.onSettled?.({ waitSeconds, runSeconds: (performance.now() - started) / 1000 });
    if (this.waiting.length) this.schedule();
  }
}
