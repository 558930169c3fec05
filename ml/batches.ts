/**
 * Streams of training / evaluation batches. A batch is plain typed arrays, so the
 * producer (a Postgres cursor, a file, a test generator) never touches tensors, and
 * the consumer holds only a batch or two at a time, whatever the dataset's size.
 */
import { mulberry32 } from '../core/random.ts';
import type { Encoder } from './encoding.ts';
import { invalid } from '../core/errors.ts';
import type { FeatureRow } from './values.ts';

/**
 * `size` rows: `x` holds size × width encoded values row by row, `y` one label each
 * (0/1 for classifiers). Once yielded, a batch's arrays belong to the consumer: a
 * producer must allocate new arrays for the next batch, never refill these (the
 * trainer reads one batch ahead, and the CPU backend wraps arrays without copying).
 */
export interface Batch {
  x: Float32Array;
  y: Float32Array;
  size: number;
}

export interface ToBatchesOptions {
  /** Column holding the label: a boolean or a finite number. */
  label: string;
  batchSize: number;
  /**
   * Shuffle through a buffer of this many rows (tf.data-style), for sources read in
   * a fixed order such as event time. Memory stays bounded by the buffer. 0: no shuffle.
   */
  shuffleBuffer?: number;
  /** Seeds the shuffle; vary it per epoch (trainModel passes the epoch to trainBatches). */
  seed?: number;
}

/** Rows one by one, or in chunks as a cursor fetches them (registry/cursor.ts streamQuery). */
export type RowSource = AsyncIterable<FeatureRow | readonly FeatureRow[]> | Iterable<FeatureRow | readonly FeatureRow[]>;

/** Encodes a stream of rows into batches of `batchSize` (the last one may be smaller). */
export async function* toBatches(rows: RowSource, encoder: Encoder, options: ToBatchesOptions): AsyncGenerator<Batch, void, undefined> {
  const { label } = options;
  let seen = 0;
  yield* assembleBatches(inShuffleOrder(chunksOf(rows), options), encoder.width, options.batchSize, (row, x, offset) => {
    encoder.encodeRow(row, x, offset);
    return labelValue(row[label], label, seen++);
  });
}

/**
 * Items in, batches of `batchSize` out (the last one may be smaller): `write` puts an
 * item's `width` values in `x` at `offset` and returns its label. A read encodes rows
 * this way; the epoch cache copies kept rows by their numbers.
 */
export async function* assembleBatches<T>(items: AsyncIterable<readonly T[]>, width: number, batchSize: number, write: (item: T, x: Float32Array, offset: number) => number): AsyncGenerator<Batch, void, undefined> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw invalid(`batchSize must be a positive integer, got ${batchSize}`);
  let x = new Float32Array(batchSize * width);
  let y = new Float32Array(batchSize);
  let size = 0;
  for await (const chunk of items) {
    for (const item of chunk) {
      y[size] = write(item, x, size * width);
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

/** The chunks' items through the seeded shuffle buffer when one is asked for (more than one item), else as they come. */
export function inShuffleOrder<T>(chunks: AsyncIterable<readonly T[]>, options: Pick<ToBatchesOptions, 'shuffleBuffer' | 'seed'>): AsyncIterable<readonly T[]> {
  const shuffleBuffer = options.shuffleBuffer ?? 0;
  return shuffleBuffer > 1 ? shuffled(chunks, shuffleBuffer, options.seed ?? 0) : chunks;
}

/** A row's label as a number (booleans as 0/1); throws, naming the row, for anything else. */
export function labelValue(value: unknown, label: string, rowIndex: number): number {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  throw invalid(`row ${rowIndex}: label ${label} must be a boolean or a finite number, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`, { label });
}

/** A row source as chunks of rows, whether it gives rows or chunks. */
export async function* chunksOf(rows: RowSource): AsyncGenerator<readonly FeatureRow[], void, undefined> {
  for await (const item of rows) yield isChunk(item) ? item : [item];
}

function isChunk(item: FeatureRow | readonly FeatureRow[]): item is readonly FeatureRow[] {
  return Array.isArray(item);
}

/**
 * Chunks in, chunks out (no async step per row): each incoming row swaps with a random
 * buffered one. The order out depends only on the rows' order in and the seed, not on
 * how they are chunked (the epoch cache replays a split's row numbers through it).
 */
async function* shuffled<T>(chunks: AsyncIterable<readonly T[]>, bufferSize: number, seed: number): AsyncGenerator<readonly T[], void, undefined> {
  const random = mulberry32(seed);
  const buffer: T[] = [];
  for await (const chunk of chunks) {
    const out: T[] = [];
    for (const row of chunk) {
      if (buffer.length < bufferSize) {
        buffer.push(row);
        continue;
      }
      const j = Math.floor(random() * bufferSize);
      out.push(buffer[j] as T);
      buffer[j] = row;
    }
    if (out.length > 0) yield out;
  }
  for (let i = buffer.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [buffer[i], buffer[j]] = [buffer[j] as T, buffer[i] as T];
  }
  yield buffer;
}
