/**
 * Where the stream plan (pit-stream.ts) keeps a chunk's spine rows as it reads them:
 * each row's bytes (an Arena, bucketed by sort key, or references into the stream
 * read), its time, and per join its key's id (KeyIds); and how a spine segment's row
 * (spine-segments.ts) is kept there, from a layout that is plain data, so that a
 * thread of its own can read some of a pass's files (spine-helper.ts) and hand its
 * chunks' rows over (an Arena's blocks and the typed arrays moved, not copied), to
 * follow the main thread's (concatSpines).
 */
import { copyBytes, copyThrough, dataViewOf, DataViews, fieldEnd, fieldStart, shortBytesCode, ShortCodeIds, SHORT_BYTES, timestampField, type BinaryTuple } from '../db/index.ts';
import { concatFloat64, concatInt32, GrowableFloat64, GrowableInt32 } from '../../core/growable.ts';

/** Bytes before a record's row bytes in an Arena: the row's number in its chunk, its sort key, the length of its bytes, where its extra columns begin. */
const RECORD_HEADER = 16;

/** Where a chunk's spine rows are kept as they are read: each row's output and extra columns' bytes, as Postgres sent them. */
export interface SpineRows {
  readonly buckets: number;
  /** Row `row`'s bytes `buf[start, end)`, its extra columns from `split` on, with its sort key, into `bucket`. */
  push(bucket: number, row: number, key: number, buf: Buffer, start: number, split: number, end: number): void;
  /** Where `bucket`'s records are, in the order pushed. */
  records(bucket: number): BucketRecords;
}

/**
 * A chunk's spine rows as records (RECORD_HEADER, then the row's output and extra
 * columns' bytes as Postgres sent them), appended to one of `buckets` streams. With
 * an order, a row goes to the bucket of its sort key's top byte: sorting a bucket
 * and writing its rows then touches only its own bytes (a few hundred KiB), where
 * visiting a whole chunk's rows in shuffled order missed the cache at every row.
 */
export class Arena implements SpineRows {
  private readonly blocks: Buffer[][];
  /** Per bucket, its last block's DataView (the one pushed to). */
  private readonly lastViews: DataView[];
  /** Per bucket, the bytes used in each of its blocks. */
  private readonly used: number[][];
  /** Records per bucket. */
  private readonly counts: number[];
  /** The DataViews of the pieces of the COPY pushed from. */
  private readonly sources = new DataViews();

  constructor(
    readonly buckets: number,
    private readonly blockSize: number,
  ) {
    this.blocks = Array.from({ length: buckets }, () => []);
    this.lastViews = new Array<DataView>(buckets);
    this.used = Array.from({ length: buckets }, () => []);
    this.counts = new Array<number>(buckets).fill(0);
  }

  push(bucket: number, row: number, key: number, buf: Buffer, start: number, split: number, end: number): void {
    this.pushParts(bucket, row, key, buf, start, split, end, undefined, 0);
  }

  /** push, of a row whose extra columns' fields (`tail[0, tailEnd)`) come from elsewhere than its output columns' (`buf[start, split)`). */
  pushParts(bucket: number, row: number, key: number, buf: Buffer, start: number, split: number, end: number, tail: Buffer | undefined, tailEnd: number): void {
    const blocks = this.blocks[bucket] as Buffer[];
    const used = this.used[bucket] as number[];
    const need = RECORD_HEADER + end - start + tailEnd;
    let last = blocks.length - 1;
    if (last < 0 || (used[last] as number) + need > (blocks[last] as Buffer).length) {
      // Each block an ArrayBuffer of its own: a spine thread's blocks are moved to the main thread, not copied (spine-helper.ts).
      const fresh = Buffer.allocUnsafeSlow(Math.max(this.blockSize, need));
      blocks.push(fresh);
      this.lastViews[bucket] = dataViewOf(fresh);
      used.push(0);
      last++;
    }
    const block = blocks[last] as Buffer;
    const view = this.lastViews[bucket] as DataView;
    const at = used[last] as number;
    view.setInt32(at, row, true);
    view.setUint32(at + 4, key, true);
    view.setInt32(at + 8, end - start + tailEnd, true);
    view.setInt32(at + 12, split - start, true);
    copyThrough(buf, this.sources.of(buf), start, end, block, view, at + RECORD_HEADER);
    if (tail) copyThrough(tail, this.sources.of(tail), 0, tailEnd, block, view, at + RECORD_HEADER + end - start);
    used[last] = at + need;
    this.counts[bucket] = (this.counts[bucket] as number) + 1;
  }

  /** Its blocks (per bucket), the bytes used in each, its records per bucket: what a thread posts (PostedSpine). */
  parts(): { blocks: Buffer[][]; used: number[][]; counts: number[] } {
    return { blocks: this.blocks, used: this.used, counts: this.counts };
  }

  /** The Arena whose parts are these (posted by a thread: its blocks' bytes arrive as Uint8Arrays); rows pushed after go to new blocks. */
  static of(parts: { blocks: Uint8Array[][]; used: number[][]; counts: number[] }): Arena {
    const arena = new Arena(parts.blocks.length, 256 << 10);
    parts.blocks.forEach((blocks, b) => {
      arena.blocks[b] = blocks.map((u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength));
      const last = arena.blocks[b]?.[blocks.length - 1];
      if (last) arena.lastViews[b] = dataViewOf(last);
    });
    arena.used.splice(0, arena.used.length, ...parts.used.map((u) => [...u]));
    arena.counts.splice(0, arena.counts.length, ...parts.counts);
    return arena;
  }

  /**
   * The rows of `first`, then those of `second` (numbered from `rowsBefore` on: their
   * records' row numbers are moved up by it, in place), in one Arena: a chunk's spine read
   * in two parts, one per thread. `second` is not to be used after.
   */
  static concat(first: Arena, second: Arena, rowsBefore: number): Arena {
    const arena = new Arena(first.buckets, 256 << 10);
    for (let b = 0; b < first.buckets; b++) {
      const blocks = second.blocks[b] as Buffer[];
      blocks.forEach((block, k) => {
        const view = dataViewOf(block);
        const used = (second.used[b] as number[])[k] as number;
        for (let at = 0; at < used; at += RECORD_HEADER + view.getInt32(at + 8, true)) view.setInt32(at, view.getInt32(at, true) + rowsBefore, true);
      });
      arena.blocks[b] = [...(first.blocks[b] as Buffer[]), ...blocks];
      arena.used[b] = [...(first.used[b] as number[]), ...(second.used[b] as number[])];
      arena.counts[b] = (first.counts[b] as number) + (second.counts[b] as number);
      const last = arena.blocks[b]?.at(-1);
      if (last) arena.lastViews[b] = dataViewOf(last);
    }
    return arena;
  }

  records(bucket: number): BucketRecords {
    const blocks = this.blocks[bucket] as Buffer[];
    const used = this.used[bucket] as number[];
    const records = bucketRecords(blocks, this.counts[bucket] as number);
    let i = 0;
    blocks.forEach((block, b) => {
      const view = dataViewOf(block);
      for (let at = 0; at < (used[b] as number); at += RECORD_HEADER + view.getInt32(at + 8, true), i++) {
        records.block[i] = b;
        records.row[i] = view.getInt32(at, true);
        records.key[i] = view.getUint32(at + 4, true);
        records.start[i] = at + RECORD_HEADER;
        records.split[i] = at + RECORD_HEADER + view.getInt32(at + 12, true);
        records.end[i] = at + RECORD_HEADER + view.getInt32(at + 8, true);
      }
    });
    return records;
  }
}

/**
 * A chunk's spine rows, unordered, where the COPY's reader handed them over: each row
 * a reference into the piece of the stream that holds it, which is kept (a piece is
 * never reused: each read of the socket is a buffer of its own, as is a row completed
 * across two). No copy a row: for batch inference, which hands the rows out in the
 * order read, copying each into an Arena took about a tenth of a reader thread's time.
 */
class SpineRefs implements SpineRows {
  readonly buckets = 1;
  private readonly blocks: Buffer[] = [];
  private readonly block = new GrowableInt32(1 << 14);
  private readonly start = new GrowableInt32(1 << 14);
  private readonly split = new GrowableInt32(1 << 14);
  private readonly end = new GrowableInt32(1 << 14);

  push(_bucket: number, row: number, _key: number, buf: Buffer, start: number, split: number, end: number): void {
    if (row !== this.block.length) throw new Error(`spine row ${row} pushed out of order (expected ${this.block.length})`);
    if (this.blocks[this.blocks.length - 1] !== buf) this.blocks.push(buf);
    this.block.push(this.blocks.length - 1);
    this.start.push(start);
    this.split.push(split);
    this.end.push(end);
  }

  records(): BucketRecords {
    const n = this.block.length;
    const records = bucketRecords(this.blocks, n);
    records.block.set(this.block.view());
    records.start.set(this.start.view());
    records.split.set(this.split.view());
    records.end.set(this.end.view());
    for (let i = 0; i < n; i++) records.row[i] = i;
    return records;
  }
}

/** A bucket's records (SpineRows.records): record i's bytes are `blocks[block[i]][start[i], end[i])`, its extra columns from `split[i]` on; it is row `row[i]` of its chunk. */
export interface BucketRecords {
  blocks: Buffer[];
  /** Each block's DataView. */
  views: DataView[];
  count: number;
  block: Uint32Array;
  row: Int32Array;
  key: Float64Array;
  start: Uint32Array;
  split: Uint32Array;
  end: Uint32Array;
}

function bucketRecords(blocks: Buffer[], n: number): BucketRecords {
  return { blocks, views: blocks.map(dataViewOf), count: n, block: new Uint32Array(n), row: new Int32Array(n), key: new Float64Array(n), start: new Uint32Array(n), split: new Uint32Array(n), end: new Uint32Array(n) };
}

/** One chunk's spine rows, as read. */
export interface ChunkSpine {
  arena: SpineRows;
  times: GrowableFloat64;
  /** Per join, the id of each row's key (KeyIds; -1: null). */
  keys: GrowableInt32[];
  /** With an order: the rows whose sort key is null. */
  nullKeys: Set<number>;
}

/** An int4 as an unsigned number in the same order (null last: 2^32 - 1, ties broken by nullKeys). */
export const unsignedOrder = (v: number | null) => (v === null ? 0xffffffff : (v ^ 0x80000000) >>> 0);

/** A buffer of at least `bytes` (twice them) that starts with `old`'s first `keep` bytes, and its DataView. */
function grown(old: Buffer, bytes: number, keep: number): [Buffer, DataView] {
  const buf = Buffer.allocUnsafe(bytes * 2);
  old.copy(buf, 0, 0, keep);
  return [buf, dataViewOf(buf)];
}

/**
 * Ids of a join's spine keys, from their bytes (text, as the spine sends a join's
 * key), numbered as first seen: `byText` maps each key to its id. A key of up to 6
 * bytes (an airport code, a short id) is looked up as a number made of its bytes, so
 * no string is made per row: a string per row and a lookup by it took about a tenth of
 * reading a spine.
 */
export class KeyIds {
  readonly byText = new Map<string, number>();
  private readonly byBytes = new ShortCodeIds();

  /** The id of the key `buf[start, start + length)`; -1 when null (length < 0). */
  idOf(buf: Buffer, start: number, length: number): number {
    if (length < 0) return -1;
    if (length > SHORT_BYTES) return this.idOfText(buf.toString('utf8', start, start + length));
    const code = shortBytesCode(buf, start, length);
    let id = this.byBytes.get(code);
    if (id < 0) {
      id = this.idOfText(buf.toString('utf8', start, start + length));
      this.byBytes.set(code, id);
    }
    return id;
  }

  /** The id of the key `text`. */
  idOfText(text: string): number {
    let id = this.byText.get(text);
    if (id === undefined) {
      id = this.byText.size;
      this.byText.set(text, id);
    }
    return id;
  }
}

/** A new chunk's spine: its rows in an Arena of 256 buckets of 256 KiB blocks to sort into (`ordered`), else where they were read, in that order. */
export function newChunkSpine(joins: number, ordered: boolean): ChunkSpine {
  return {
    arena: ordered ? new Arena(256, 256 << 10) : new SpineRefs(),
    times: new GrowableFloat64(1 << 14),
    keys: Array.from({ length: joins }, () => new GrowableInt32(1 << 14)),
    nullKeys: new Set(),
  };
}

/**
 * How a spine segment's row is kept in a chunk's spine (see spineRowKeeper): plain data,
 * posted to a spine thread as it is. A row's fields are the spine's output columns, then
 * the joins' own key fields.
 */
export interface SegmentRowLayout {
  spineOutputs: number;
  /** The field of the row's time. */
  timeField: number;
  /** Per join, the field of its key. */
  keyFields: number[];
  /** The extra columns' fields, in order, each made from the row. */
  extras: SegmentExtra[];
  /** Which of `extras` is the order's key (its value, never null, sorts the row). */
  sortAt: number;
}

/**
 * An extra column's field, from a segment's row: the row's chunk (a smallint); an int4,
 * the `keptAt`-th value the segment keeps per row (KeptInt4), or, at -1, computed from the
 * row's fields `inputs` (by a function given beside the layout: SpineRowKeeper's
 * `values`); or chosen by the row's time (TimeCuts).
 */
export type SegmentExtra = { kind: 'chunk' } | { kind: 'int4'; keptAt: number; inputs: number[] } | { kind: 'byTime'; field: number; cuts: TimeCuts };

/**
 * A field chosen by a time: `fields[i]` (its binary form, as Postgres sends it; null for
 * a null) for a time before `cuts[i]` and at or after the cut before; the last for a
 * time at or after every cut, or for a null time. Times in microseconds since 1970.
 */
export interface TimeCuts {
  cuts: readonly number[];
  fields: ReadonlyArray<Uint8Array | null>;
}

/** Keeps a segment's row (of chunk `chunk`; `kept`: the values its segment keeps, the row's at `i`) in `spine`. */
export type SpineRowKeeper = (spine: ChunkSpine, row: BinaryTuple, chunk: number, kept: readonly Int32Array[], i: number) => void;

/**
 * What keeps a segment's row in a chunk's spine, as the stream plan keeps the tuple
 * Postgres sends for it: its output fields copied, its extra columns' fields made here
 * (`layout`; `values[k]` computes the int4 extra k that a segment does not keep), its
 * join keys' ids from `keyIds`, its time.
 */
export function spineRowKeeper(layout: SegmentRowLayout, keyIds: readonly KeyIds[], values: ReadonlyArray<((t: BinaryTuple, view: DataView, fields: readonly number[]) => number) | undefined> = []): SpineRowKeeper {
  const { extras, sortAt, spineOutputs, keyFields, timeField } = layout;
  const bytesOf = extras.map((e) => (e.kind === 'byTime' ? e.cuts.fields.map((f) => f && Buffer.from(f.buffer, f.byteOffset, f.byteLength)) : []));
  let tail: Buffer = Buffer.allocUnsafe(1 << 10);
  let tailView = dataViewOf(tail);
  const views = new DataViews();
  return (spine, row, chunk, keptValues, i) => {
    let at = 0;
    let key = 0;
    for (let k = 0; k < extras.length; k++) {
      const e = extras[k] as SegmentExtra;
      if (at + 8 > tail.length) [tail, tailView] = grown(tail, at + 8, at);
      if (e.kind === 'chunk') {
        tailView.setInt32(at, 2);
        tailView.setInt16(at + 4, chunk);
        at += 6;
      } else if (e.kind === 'int4') {
        const v = e.keptAt >= 0 ? ((keptValues[e.keptAt] as Int32Array)[i] as number) : (values[k] as NonNullable<(typeof values)[number]>)(row, views.of(row.buf), e.inputs);
        tailView.setInt32(at, 4);
        tailView.setInt32(at + 4, v);
        if (k === sortAt) key = unsignedOrder(v);
        at += 8;
      } else {
        const time = timestampField(row, e.field);
        const cuts = e.cuts.cuts;
        let c = 0;
        if (time === null) c = cuts.length;
        else while (c < cuts.length && time >= (cuts[c] as number)) c++;
        const v = (bytesOf[k] as Array<Buffer | null>)[c] ?? null;
        if (v && at + 4 + v.length > tail.length) [tail, tailView] = grown(tail, at + 4 + v.length, at);
        tailView.setInt32(at, v === null ? -1 : v.length);
        if (v) copyBytes(v, 0, v.length, tail, at + 4);
        at += 4 + (v?.length ?? 0);
      }
    }
    const r = spine.times.length;
    (spine.arena as Arena).pushParts(key >>> 24, r, key, row.buf, fieldStart(row, 0), fieldEnd(row, spineOutputs - 1), fieldEnd(row, spineOutputs - 1), tail, at);
    for (let ji = 0; ji < keyIds.length; ji++) {
      const field = keyFields[ji] as number;
      (spine.keys[ji] as GrowableInt32).push((keyIds[ji] as KeyIds).idOf(row.buf, row.start[field] as number, row.length[field] as number));
    }
    spine.times.push(timestampField(row, timeField) ?? -Infinity);
  };
}

/** A chunk's spine as a thread posts it: an Arena's blocks, its times and per join its keys' ids (of the thread's KeyIds, `keyTexts` in id order). */
export interface PostedSpine {
  blocks: Uint8Array[][];
  used: number[][];
  counts: number[];
  times: Float64Array;
  keys: Int32Array[];
}

/** `spine` (rows in an Arena, no null sort key) as posted, and the buffers to move with it. */
export function postedSpine(spine: ChunkSpine): { posted: PostedSpine; transfer: ArrayBuffer[] } {
  const parts = (spine.arena as Arena).parts();
  const posted: PostedSpine = { ...parts, times: spine.times.view(), keys: spine.keys.map((k) => k.view()) };
  const transfer = [...parts.blocks.flat().map((b) => b.buffer as ArrayBuffer), posted.times.buffer as ArrayBuffer, ...posted.keys.map((k) => k.buffer as ArrayBuffer)];
  return { posted, transfer };
}

/** A posted spine, its keys' ids turned into `keyIds`' by the texts of the poster's (`keyTexts[ji][id]`). */
export function receivedSpine(posted: PostedSpine, keyTexts: ReadonlyArray<readonly string[]>, keyIds: readonly KeyIds[]): ChunkSpine {
  const keys = posted.keys.map((ids, ji) => {
    const ours = Int32Array.from((keyTexts[ji] as readonly string[]).map((text) => (keyIds[ji] as KeyIds).idOfText(text)));
    for (let r = 0; r < ids.length; r++) {
      const k = ids[r] as number;
      if (k >= 0) ids[r] = ours[k] as number;
    }
    return new GrowableInt32(ids);
  });
  return { arena: Arena.of(posted), times: new GrowableFloat64(posted.times), keys, nullKeys: new Set() };
}

/** A chunk's spine read in two parts (each an Arena, with no null sort key), `second`'s rows after `first`'s; neither is to be used after. */
export function concatSpines(first: ChunkSpine, second: ChunkSpine): ChunkSpine {
  return {
    arena: Arena.concat(first.arena as Arena, second.arena as Arena, first.times.length),
    times: new GrowableFloat64(concatFloat64([first.times.view(), second.times.view()])),
    keys: first.keys.map((k, ji) => new GrowableInt32(concatInt32([k.view(), (second.keys[ji] as GrowableInt32).view()]))),
    nullKeys: new Set(),
  };
}
