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
import { assembleBatches, chunksOf, inShuffleOrder, labelValue, type Batch, type RowSource, type ToBatchesOptions } from './batches.ts';
import type { Encoder } from './encoding.ts';
import type { FeatureRow } from './values.ts';

/** Rows per block of kept rows: blocks are allocated as rows arrive, so keeping never copies. */
const BLOCK_ROWS = 1 << 16;
/** Row numbers handed to the shuffle at a time on replay. */
const REPLAY_CHUNK = 4096;

/** Bytes `rows` encoded rows of `width` values take (whole blocks, values and labels). */
function encodedBytes(rows: number, width: number): number {
  return Math.ceil(rows / BLOCK_ROWS) * BLOCK_ROWS * (width + 1) * Float32Array.BYTES_PER_ELEMENT;
}

/** Whether a split of `rows` rows of `width` values can be kept in `leftBytes`. */
function fits(rows: number, width: number, leftBytes: number): boolean {
  return encodedBytes(rows, width) <= leftBytes;
}

/**
 * The splits a cache of `budgetBytes` will keep when their first passes come in the
 * order given (a run's: train, then validation), each taking its share of the budget.
 */
export function splitsKept<K extends string>(budgetBytes: number, width: number, splits: ReadonlyArray<readonly [K, number]>): K[] {
  const kept: K[] = [];
  let left = budgetBytes;
  for (const [key, rows] of splits) {
    if (!fits(rows, width, left)) continue;
    kept.push(key);
    left -= encodedBytes(rows, width);
  }
  return kept;
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

/** How a pass cuts and orders its batches: toBatches' options, the label aside (kept rows hold theirs). */
export type PassOptions = Omit<ToBatchesOptions, 'label'>;

/** The numbers from `start` to `end` (excluded). */
function range(start: number, end: number): number[] {
  return Array.from({ length: end - start }, (_, i) => start + i);
}

/** Row numbers 0 to `count`, a chunk at a time. */
async function* rowNumbers(count: number): AsyncGenerator<readonly number[], void, undefined> {
  for (let start = 0; start < count; start += REPLAY_CHUNK) yield range(start, Math.min(count, start + REPLAY_CHUNK));
}

/** Each chunk of `source` encoded into `into`, as the row numbers it was given there. */
async function* keeping(source: RowSource, into: EncodedRows, encoder: Encoder, label: string): AsyncGenerator<readonly number[], void, undefined> {
  for await (const chunk of chunksOf(source)) {
    const first = into.rows;
    for (const row of chunk) into.append(encoder, row, label);
    yield range(first, into.rows);
  }
}

/** Batches of kept rows, in the order of the row numbers given. */
function gather(rows: EncodedRows, numbers: AsyncIterable<readonly number[]>, options: PassOptions): AsyncGenerator<Batch, void, undefined> {
  return assembleBatches(inShuffleOrder(numbers, options), rows.width, options.batchSize, (index, x, offset) => rows.copyRow(index, x, offset));
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
    if (kept) return gather(kept, rowNumbers(kept.rows), options);
    if (!fits(split.rows, encoder.width, this.budgetBytes - this.bytes)) return undefined;
    const into = new EncodedRows(encoder.width);
    const done = this.kept;
    return (async function* () {
      yield* gather(into, keeping(split.read(), into, encoder, label), options);
      // Only a whole pass is kept: a pass left early (a stop mid-epoch) is read again next time.
      done.set(key, into);
    })();
  }
}
