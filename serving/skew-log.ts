/**
 * The served log, for skew checks: a sample of what the server served (entity keys,
 * request time, the feature vector it scored, the score, the model version), written
 * to the monitoring store off the request path.
 *
 * A request only samples and queues (no I/O, no await). Rows are written in batches,
 * each one multi-row INSERT, when `batchSize` are waiting or `flushMs` after the first
 * one queued, one INSERT at a time on a connection of the log's own (the lookups'
 * pool is never waited on). The queue is bounded: when it is full a sampled row is
 * dropped and counted, so a slow or unreachable database never slows a prediction or
 * grows the server's memory. A batch whose INSERT fails is dropped and counted too
 * (it is a sample: losing some rows biases nothing). Closing writes what is queued.
 */
import type { Logger } from '../core/log.ts';
import type { ServedRow } from '../registry/monitoring/index.ts';
import type { ServingMetrics } from './metrics.ts';
import type { Prediction } from './request.ts';

export interface SkewLogOptions {
  /** Share of served entities logged, 0 to 1 (0: none). */
  rate: number;
  /** Writes one batch (one INSERT). */
  write: (rows: ServedRow[]) => Promise<void>;
  metrics: Pick<ServingMetrics, 'skewLogQueueDepth' | 'skewLogRows' | 'skewLogDropped'>;
  log: Logger;
  /** Most rows waiting; beyond, sampled rows are dropped (default 10 000). */
  maxQueue?: number;
  /** Rows per INSERT (default 500). */
  batchSize?: number;
  /** Longest a queued row waits for its batch to fill (default 1000 ms). */
  flushMs?: number;
  /** Uniform [0, 1) (default Math.random): tests pin the sample. */
  random?: () => number;
}

export const DEFAULT_SKEW_LOG_RATE = 0.01;

export class SkewLog {
  private queue: ServedRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private closed = false;
  private readonly maxQueue: number;
  private readonly batchSize: number;
  private readonly flushMs: number;
  private readonly random: () => number;

  constructor(private readonly options: SkewLogOptions) {
    if (!(options.rate >= 0 && options.rate <= 1)) throw new Error(`the skew log rate is a share from 0 to 1, got ${String(options.rate)}`);
    this.maxQueue = options.maxQueue ?? 10_000;
    this.batchSize = options.batchSize ?? 500;
    this.flushMs = options.flushMs ?? 1_000;
    this.random = options.random ?? Math.random;
  }

  /** Whether this served entity is to be logged (decide before building its row). */
  sample(): boolean {
    return !this.closed && this.options.rate > 0 && (this.options.rate >= 1 || this.random() < this.options.rate);
  }

  /** Queues a sampled row, or drops it when the queue is full. Never waits. */
  add(row: ServedRow): void {
    if (this.closed) return;
    if (this.queue.length >= this.maxQueue) {
      this.options.metrics.skewLogDropped.inc({ reason: 'queue_full' });
      return;
    }
    this.queue.push(row);
    this.options.metrics.skewLogQueueDepth.set(this.queue.length);
    if (this.queue.length >= this.batchSize) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.flushMs).unref();
  }

  /** Stops sampling and writes every queued row. */
  async close(): Promise<void> {
    this.closed = true;
    await this.drain();
  }

  /** Writes everything queued now (tests, and close). */
  async drain(): Promise<void> {
    while (this.queue.length || this.writing) {
      this.kick();
      await this.writing;
    }
  }

  /** Starts writing unless a write is in flight (it starts the next one when done). */
  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.writing || this.queue.length === 0) return;
    this.writing = this.writeBatch().finally(() => {
      this.writing = undefined;
      if (this.queue.length >= this.batchSize || (this.closed && this.queue.length)) this.kick();
      else if (this.queue.length) this.timer ??= setTimeout(() => this.kick(), this.flushMs).unref();
    });
  }

  private async writeBatch(): Promise<void> {
    const batch = this.queue.splice(0, this.batchSize);
    this.options.metrics.skewLogQueueDepth.set(this.queue.length);
    try {
      await this.options.write(batch);
      this.options.metrics.skewLogRows.inc(batch.length);
    } catch (err) {
      this.options.metrics.skewLogDropped.inc({ reason: 'write_failed' }, batch.length);
      this.options.log('skew log write failed; its rows are dropped', { rows: batch.length, error: err instanceof Error ? err.message : String(err) });
    }
  }
}

/**
 * Samples a request's scored entities into the log: each one's keys, the features the
 * lookup gave the scorer (as of `at`), its score and the version. Entities that were
 * not scored (NOT_FOUND, INVALID_FEATURES) are not logged: nothing was served.
 */
export function logServed(
  log: SkewLog,
  served: { model: string; version: number; view: { name: string; version: number } },
  rows: ReadonlyArray<Record<string, unknown> | undefined>,
  predictions: readonly Prediction[],
  at: Date,
): void {
  predictions.forEach((p, i) => {
    const features = rows[i];
    if (p.status !== 'OK' || features === undefined || !log.sample()) return;
    log.add({ model: served.model, modelVersion: served.version, featureView: { name: served.view.name, version: served.view.version }, entityKeys: p.keys, servedAt: at, features, prediction: p.score });
  });
}
