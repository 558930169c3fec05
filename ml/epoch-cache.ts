/**
 * A training run's splits encoded once and kept in memory for the epochs after the
 * first (tf.data's `cache()`): every epoch after the first replays the split from here
 * instead of reading it from Postgres, decoding and encoding it again.
 *
 * A pass that keeps its split encodes each row once, as it is read, into the kept rows
 * (in the order read); the shuffle then runs over row numbers, and each batch copies its
 * rows' values. The order is toBatches' (batches.ts): the same seeded buffer over the same
 * sequence, so every pass, the first included, gives the very batches a plain read gives.
 * A split is kept when its rows fit what is left of the run's budget (bytes of encoded
 * values and labels, known before the pass from the split's row count) and its pass ran
 * to the end; a split that does not fit is read from Postgres every epoch, as without a
 * cache.
 */
import type { Batch, RowSource } from './batches.ts';
import { labelValue, shuffled } from './batches.ts';
import type { Encoder } from './encoding.ts';
import type { FeatureRow } from './values.ts';

/** Rows per block of kept rows: blocks are allocated as rows arrive, so keeping never copies. */
const BLOCK_ROWS = 1 << 16;
/** Row numbers handed to the shuffle at a time on replay. */
const REPLAY_CHUNK = 4096;

/** Bytes `rows` encoded rows of `width` values take (whole blocks, values and labels). */
export function encodedBytes(rows: number, width: number): number {
  return Math.ceil(rows / BLOCK_ROWS) * BLOCK_ROWS * (width + 1) * Float32Array.BYTES_PER_ELEMENT;
}

/** A split's rows, encoded, in the order they were read: `width` values and a label each. */
export class EncodedRows {
  private readonly xs: Float32Array[] = [];
  private readonly ys: Float32Array[] = [];
  private count = 0;

  constructor(readonly width: number) {}

  get rows(): number {
    return this.count;
  }

  /** Bytes held. */
  get bytes(): number {
    return encodedBytes(this.count, this.width);
  }

  /** Encodes and appends a row; throws what encodeRow / the label check throw (naming the row by its place in the read), leaving the rows as they were. */
  append(encoder: Encoder, row: FeatureRow, label: string): void {
    const y = labelValue(row[label], label, this.count);
    const block = Math.floor(this.count / BLOCK_ROWS);
    const at = this.count % BLOCK_ROWS;
    if (block === this.xs.length) {
      this.xs.push(new Float32Array(BLOCK_ROWS * this.width));
      this.ys.push(new Float32Array(BLOCK_ROWS));
    }
    encoder.encodeRow(row, this.xs[block] as Float32Array, at * this.width);
    (this.ys[block] as Float32Array)[at] = y;
    this.count += 1;
  }

  /** Copies row `index`'s values to `out` at `offset`; returns its label. */
  copyRow(index: number, out: Float32Array, offset: number): number {
    const block = Math.floor(index / BLOCK_ROWS);
    const at = index % BLOCK_ROWS;
    const x = this.xs[block] as Float32Array;
    const from = at * this.width;
    for (let i = 0; i < this.width; i++) out[offset + i] = x[from + i] as number;
    return (this.ys[block] as Float32Array)[at] as number;
  }
}

export interface PassOptions {
  batchSize: number;
  /** As toBatches: shuffle through a buffer of this many rows; 0 or absent: in order. */
  shuffleBuffer?: number;
  seed?: number;
}

/** The rows of `order` as batches, their values copied from `rows`. */
async function* gather(rows: EncodedRows, order: AsyncIterable<readonly number[]>, batchSize: number): AsyncGenerator<Batch, void, undefined> {
  const width = rows.width;
  let x = new Float32Array(batchSize * width);
  let y = new Float32Array(batchSize);
  let size = 0;
  for await (const chunk of order) {
    for (const index of chunk) {
      y[size] = rows.copyRow(index, x, size * width);
      size += 1;
      if (size < batchSize) continue;
      yield { x, y, size };
      x = new Float32Array(batchSize * width);
      y = new Float32Array(batchSize);
      size = 0;
    }
  }
  if (size > 0) yield { x: x.slice(0, size * width), y: y.slice(0, size), size };
}

function shuffledIfAsked(numbers: AsyncIterable<readonly number[]>, options: PassOptions): AsyncIterable<readonly number[]> {
  const shuffleBuffer = options.shuffleBuffer ?? 0;
  return shuffleBuffer > 1 ? shuffled(numbers, shuffleBuffer, options.seed ?? 0) : numbers;
}

async function* rowNumbers(count: number): AsyncGenerator<readonly number[], void, undefined> {
  for (let start = 0; start < count; start += REPLAY_CHUNK) {
    const end = Math.min(count, start + REPLAY_CHUNK);
    yield Array.from({ length: end - start }, (_, i) => start + i);
  }
}

/** Each chunk of `source` encoded into `into`, as the row numbers it was given there. */
async function* keeping(source: RowSource, into: EncodedRows, encoder: Encoder, label: string): AsyncGenerator<readonly number[], void, undefined> {
  for await (const item of source) {
    const first = into.rows;
    for (const row of Array.isArray(item) ? (item as readonly FeatureRow[]) : [item as FeatureRow]) into.append(encoder, row, label);
    yield Array.from({ length: into.rows - first }, (_, i) => first + i);
  }
}

/** A split to read: its row count (for the budget) and a fresh read of its rows. */
export interface SplitSource {
  rows: number;
  read(): RowSource;
}

/** One run's kept splits, under a budget of bytes they share. */
export class EpochCache<K extends string = string> {
  private readonly kept = new Map<K, EncodedRows>();

  constructor(private readonly budgetBytes: number) {}

  /** The split's rows, once a pass over them has been kept. */
  get(key: K): EncodedRows | undefined {
    return this.kept.get(key);
  }

  /** Bytes the kept splits hold. */
  get bytes(): number {
    let total = 0;
    for (const rows of this.kept.values()) total += rows.bytes;
    return total;
  }

  /**
   * A pass over the split through the cache: replayed once kept; else read and kept as it
   * goes when its rows fit what is left of the budget. Undefined when they do not: read it
   * as without a cache.
   */
  pass(key: K, split: SplitSource, encoder: Encoder, label: string, options: PassOptions): AsyncGenerator<Batch, void, undefined> | undefined {
    const kept = this.kept.get(key);
    if (kept) return gather(kept, shuffledIfAsked(rowNumbers(kept.rows), options), options.batchSize);
    if (encodedBytes(split.rows, encoder.width) > this.budgetBytes - this.bytes) return undefined;
    const into = new EncodedRows(encoder.width);
    const done = this.kept;
    return (async function* () {
      yield* gather(into, shuffledIfAsked(keeping(split.read(), into, encoder, label), options), options.batchSize);
      // Only a whole pass is kept: a pass left early (a stop mid-epoch) is read again next time.
      done.set(key, into);
    })();
  }
}
