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
  const { label, batchSize } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw invalid(`batchSize must be a positive integer, got ${batchSize}`);
  const width = encoder.width;
  let x = new Float32Array(batchSize * width);
  let y = new Float32Array(batchSize);
  let size = 0;
  let seen = 0;

  // Encodes one row into the batch being filled; returns the batch when it is full.
  const add = (row: FeatureRow): Batch | undefined => {
    encoder.encodeRow(row, x, size * width);
    y[size] = labelValue(row[label], label, seen);
    seen += 1;
    size += 1;
    if (size < batchSize) return undefined;
    const full = { x, y, size };
    x = new Float32Array(batchSize * width);
    y = new Float32Array(batchSize);
    size = 0;
    return full;
  };

  const shuffleBuffer = options.shuffleBuffer ?? 0;
  const chunks = shuffleBuffer > 1 ? shuffled(chunksOf(rows), shuffleBuffer, options.seed ?? 0) : chunksOf(rows);
  for await (const chunk of chunks) {
    for (const row of chunk) {
      const full = add(row);
      if (full) yield full;
    }
  }
  if (size > 0) yield { x: x.slice(0, size * width), y: y.slice(0, size), size };
}

/** A row's label as a number (booleans as 0/1); throws, naming the row, for anything else. */
export function labelValue(value: unknown, label: string, rowIndex: number): number {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  throw invalid(`row ${rowIndex}: label ${label} must be a boolean or a finite number, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`, { label });
}

async function* chunksOf(rows: RowSource): AsyncGenerator<readonly FeatureRow[], void, undefined> {
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
export async function* shuffled<T>(chunks: AsyncIterable<readonly T[]>, bufferSize: number, seed: number): AsyncGenerator<readonly T[], void, undefined> {
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
