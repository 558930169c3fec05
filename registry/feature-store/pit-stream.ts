/**
 * The point-in-time join streamed through Node (the 'stream' plan): the same rows as
 * the window and lateral plans of point-in-time.ts, written into a table (training
 * datasets, streamPointInTime) or handed out decoded into typed columns (batch
 * inference, pointInTimeBatches). The window plan sorts the spine and every joined row
 * together (millions of wide rows, spilled to disk); this plan sorts only the spine and
 * reads each joined group once, in no order:
 *
 *  1. The spine rows come out of Postgres by binary COPY, unsorted; each keeps its
 *     output columns' bytes as Postgres sent them (never decoded), its join keys and
 *     its time. Per join, its rows are indexed by key and time. The order the table
 *     wants them stored in (StreamOptions.order) is sorted here: the rows are kept in
 *     buckets by their key's top byte, and each bucket is sorted when it is written.
 *     Chunks written together (StreamOptions.chunkExtra) read their spines together, a
 *     slice of the window's time per connection, each row routed to its chunk: each
 *     spine row is read once, where a read per chunk scanned every row of the window.
 *     A spine read from its segment files is read on two threads, half of the files
 *     each (spine-helper.ts).
 *  2. Each row of a joined group is placed at the first spine row (of its key, by time)
 *     it is visible to, and kept there if its event time is the newest placed there
 *     so far. A row visible to a spine row is visible to every later one of its key,
 *     so a running max along each key's spine rows then gives every spine row the
 *     newest row it could know: the running max of the window plan, without sorting
 *     the group's rows. Rows that can join nothing are never held: memory is the
 *     spine's, not the group's.
 *  3. The rows are written back by binary COPY, spine bytes and feature bytes copied
 *     unchanged, so every type round-trips exactly; or decoded into typed columns
 *     (core/columns.ts), with no object per row.
 *
 * A joined group whose features all have a fixed width comes from its range partitions'
 * column segments (segments.ts: files of a partition's rows as of the last commit that
 * wrote to it): a partition read from Postgres once is read from its file after, the
 * same bytes. Each key's seeds (its newest row before the rows read) still come from
 * Postgres, by an index probe.
 *
 * A group's rows are unique by key and event time in a snapshot (a correction
 * supersedes the row it corrects); should two tie, the first read wins.
 */
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import type pg from 'pg';
import { BinaryCopyWriter, cancelOnAbort, col, copyIn, ColumnDecoder, copyThrough, dataViewOf, DataViews, decodeFields, fieldBytes, fieldDecoder, fieldEnd, fieldEquals, fieldStart, id, ids, int4Field, nullFields, rowTemplate, sql, timestampField, toText, type BinaryTuple, type ChunkSource, type DecoderOptions, type FieldDecoder, type Sql } from '../db/index.ts';
import { rowOf, type ColumnArrays, type ColumnBatch } from '../../core/columns.ts';
import { concatFloat64, concatInt32, type GrowableInt32 } from '../../core/growable.ts';
import { faultedRoom, room, ScratchPool, type Scratch } from '../../core/scratch.ts';
import { Turns } from '../../core/turns.ts';
import { joinedRowsFrom, joinedSeedsStreamSql, joinedStreamSql, keyText, pointInTimeColumns, SPINE_CHUNK_COLUMN, spineStreamFields, spineStreamSql, type PitJoin, type PitQuery } from './point-in-time.ts';
import { lowerBound, orderByKeyThenTime, orderByUint32 } from './key-order.ts';
import { copyOut } from './copy-read.ts';
import { FIXED_WIDTH, segmentCache, segmentScratch, type PartitionSegment, type Segment, type SegmentCache, type SegmentRead, type SegmentSpec } from './segments.ts';
import { eachSpineFileRow, spineFromSegments, spineSegmentFiles, spineSegmentPlan, type KeptInt4, type SpineFiles, type SpineSegmentPlan } from './spine-segments.ts';
import { spineThread } from './spine-helper.ts';
import { concatSpines, KeyIds, newChunkSpine, receivedSpine, spineRowKeeper, unsignedOrder, type BucketRecords, type ChunkSpine, type PostedSpine, type SegmentExtra, type SegmentRowLayout, type TimeCuts } from './spine-rows.ts';

/** One chunk of the join (PitQuery.chunk), written into a table of its own. */
export interface StreamChunk {
  index: number;
  /** Writes the chunk's rows: a transaction, say, that created its table. */
  writer: Knex;
  /**
   * A table with the query's columns (pointInTimeColumns), then the extra ones, created
   * in `writer`'s transaction: its rows go in frozen (COPY FREEZE), so that no reader
   * has to set their hint bits (and write every page again) on its first read.
   */
  table: string;
  /** Columns computed per spine row over its output columns (e.g. a split): the table's last columns. */
  extra: ExtraColumn[];
  /** Told every row as it is written, in the table's order (figures gathered on the way: a split's statistics). */
  tap?: RowTap;
}

/** An extra column: `expr` over the spine's output columns, computed by Postgres, or by the stream plan (inNode) where it can. */
export interface ExtraColumn {
  expr: Sql;
  as: string;
  inNode?: SpineInt4;
  /**
   * The column's field computed in Node, for a spine read from its segments
   * (spine-segments.ts), where no Postgres computes `expr`; it must equal it: a field
   * chosen by the spine output column `column`'s time (a timestamptz), as plain data that
   * a spine thread is posted. A chunk's constant (StreamOptions.chunkExtra) and an inNode
   * column need none.
   */
  fromTime?: { column: string; cuts: TimeCuts };
}

/**
 * An int4 extra column the stream plan computes in Node from each spine row's output
 * columns as it reads the row, for a value that costs Postgres to compute per row (a
 * training dataset's shuffle key): Postgres sends a placeholder, which the value
 * replaces in the row's bytes. It must equal the column's `expr`, which the SQL plans use.
 */
export interface SpineInt4 {
  /** The spine output columns it reads, by name. */
  columns: readonly string[];
  /** Its value from row `t`'s fields `fields` (the columns', in order); `view` is a DataView of `t.buf`. */
  value(t: BinaryTuple, view: DataView, fields: readonly number[]): number;
  /**
   * Names the function, for a value that depends on the row alone: any two with the same
   * name give the same value from the same row, whatever the build. A spine segment
   * (spine-segments.ts) then keeps each row's value, computed once when its file is
   * written: a training dataset's shuffle key, whose printing and hashing took a quarter
   * of the main thread's spine read from segments.
   */
  kept?: string;
}

/** What Postgres computes for an extra column: its expression, or a placeholder for one computed in Node. */
const extraSql = (e: ExtraColumn): Sql => (e.inNode ? sql`0::int4` : e.expr);

/**
 * Told each row a chunk writes, as it is written. A row's fields come in ranges of
 * binary COPY fields (each a 4-byte length, -1 for null, then its bytes): range k holds
 * `count[k]` fields from `start[k]` in `buf[k]` (whose DataView is `view[k]`), or, where
 * `buf[k]` is undefined, that many nulls. The ranges are reused from row to row: read them before returning.
 */
export interface RowTap {
  /** Called once, before any row: the columns in the order their fields come (extra columns carry no pgType). */
  columns(columns: ReadonlyArray<{ name: string; pgType?: string }>): void;
  row(fields: RowFields): void;
}

export interface RowFields {
  readonly buf: Array<Buffer | undefined>;
  /** Each range's buffer's DataView (read through it: Buffer's read methods are calls, a view's are inlined). */
  readonly view: Array<DataView | undefined>;
  readonly start: Int32Array;
  readonly count: Int32Array;
}

export interface StreamOptions {
  /** Chunks the query is cut into (PitQuery.chunk.count). */
  count: number;
  /**
   * The order each chunk's rows are written in: by `key`, an int4 extra column,
   * ascending (nulls last), ties by the output columns `then`, ascending (text by code
   * unit: a C collation's order). Sorted here: Postgres sends the spine unsorted (a
   * sort of each chunk there took 40% of reading it).
   */
  order?: SpineOrder;
  /**
   * An extra column (of every chunk's) that holds the chunk's index as a smallint: with
   * it (and an order), a pass reads its chunks' spines together, each row once, and
   * routes it by its chunk. The chunks' other extra columns must not depend on the chunk.
   */
  chunkExtra?: string;
  signal?: AbortSignal;
  /** Told how long each step took, in seconds: reading the spines, the joined groups, writing the rows. */
  onStep?: (step: StreamStep, seconds: number) => void;
}

export type StreamStep = 'spine' | 'groups' | 'write';

export interface SpineOrder {
  key: string;
  then: readonly string[];
}

/**
 * A chunk's rows are written in shuffled order, and each row's joined features lie at
 * its place (key-and-time order) in a slab of hundreds of MB: every row's slot missed
 * the cache (and the TLB), and the copy waited for it, one row at a time. Reading a
 * byte of each of the next rows' slots first, in a loop of independent loads, has
 * their misses served side by side; the copies then hit the cache. In a script copying
 * 3M slots of 144 bytes from a 432 MB slab: 1.18 s in shuffled order, 0.44 s touching
 * 8 ahead, 0.20 s in slot order. The bench's 3M-row dataset: the write's main thread
 * 3.1-3.4 s against 3.8-3.9 s of CPU.
 */
const GATHER_AHEAD = 8;
const CACHE_LINE = 64;
/** Where the touched bytes go, so that their loads are kept (see JoinResult.touch). */
const touched = new Int32Array(1);

/** Touches the slots of the GATHER_AHEAD records from the k-th of a bucket (in write order) in every join's slab; `places[ji]` holds join ji's place of each. */
function touchAhead(places: readonly Int32Array[], k: number, count: number, results: readonly JoinResult[]): number {
  let seen = 0;
  const end = Math.min(count, k + GATHER_AHEAD);
  for (let ji = 0; ji < results.length; ji++) {
    const at = places[ji] as Int32Array;
    const result = results[ji] as JoinResult;
    for (let q = k; q < end; q++) seen ^= result.touch(at[q] as number);
  }
  return seen;
}

/** Record i's row number in its chunk. */
const recordRow = (r: BucketRecords, i: number) => r.row[i] as number;

/** Decodes record i's output columns into `out` (see decodeFields); returns the next column's index. */
function decodeRecord(r: BucketRecords, i: number, decoders: readonly FieldDecoder[], names: readonly string[], out: Record<string, unknown>): number {
  return decodeFields(r.blocks[r.block[i] as number] as Buffer, r.start[i] as number, r.split[i] as number, decoders, names, out, 0);
}

/** Writes record i's bytes: the row's output columns, then its extra ones. */
function writeRecord(out: BinaryCopyWriter, r: BucketRecords, i: number): void {
  const block = r.block[i] as number;
  out.writeRangeThrough(r.blocks[block] as Buffer, r.views[block] as DataView, r.start[i] as number, r.end[i] as number);
}

/** How many of the query's output columns (pointInTimeColumns) are the spine's: the joined features follow them. */
function spineColumnCount(q: PitQuery): number {
  return pointInTimeColumns(q).length - q.joins.reduce((n, j) => n + j.features.length, 0);
}

/**
 * What a join gives each spine row: per place (a spine row, in key-and-time order),
 * the event time and feature bytes of the newest group row placed there. Features of
 * fixed width live in one slab of equal slots; text ones in a buffer per place.
 */
class JoinResult {
  /** Per spine row, its place (-1: its key is null). */
  readonly placeOf: Int32Array;
  readonly newest: Float64Array;
  /** Bytes used in each slot; -1: empty. */
  private readonly used: Int32Array;
  private readonly slab: Buffer | undefined;
  private readonly slabView: DataView | undefined;
  private readonly buffers: Array<Buffer | undefined> | undefined;
  /** The DataViews of the buffers offered from. */
  private readonly sources = new DataViews();

  /**
   * `scratch`: where the slab goes (a join's largest allocation, some 24 MB for a third
   * of a month of flights), valid until the scratch's next use: the caller gives it back
   * once the rows are written or decoded.
   */
  constructor(
    rows: number,
    places: number,
    private readonly slot: number | undefined,
    scratch?: Scratch,
  ) {
    this.placeOf = new Int32Array(rows).fill(-1);
    this.newest = new Float64Array(places).fill(-Infinity);
    this.used = new Int32Array(places).fill(-1);
    if (slot === undefined) this.buffers = new Array<Buffer | undefined>(places);
    else {
      this.slab = room(scratch, places * slot).subarray(0, places * slot);
      this.slabView = dataViewOf(this.slab);
    }
  }

  /** Keeps `buf[start, end)` at `place` if `eventTime` is newer than what is there. */
  offer(place: number, eventTime: number, buf: Buffer, start: number, end: number): void {
    if (!(eventTime > (this.newest[place] as number))) return;
    this.newest[place] = eventTime;
    this.used[place] = end - start;
    // A copy: the tuple's buffer is the COPY stream's (or a segment's, read into a buffer that is reused).
    if (this.slab) copyThrough(buf, this.sources.of(buf), start, end, this.slab, this.slabView as DataView, place * (this.slot as number));
    else (this.buffers as Array<Buffer | undefined>)[place] = Buffer.from(buf.subarray(start, end));
  }

  /** Place `to` takes what `from` holds. */
  carry(from: number, to: number): void {
    this.newest[to] = this.newest[from] as number;
    this.used[to] = this.used[from] as number;
    const slot = this.slot as number;
    if (this.slab) copyThrough(this.slab, this.slabView as DataView, from * slot, from * slot + (this.used[from] as number), this.slab, this.slabView as DataView, to * slot);
    else (this.buffers as Array<Buffer | undefined>)[to] = (this.buffers as Array<Buffer | undefined>)[from];
  }

  clear(place: number): void {
    this.used[place] = -1;
    if (this.buffers) this.buffers[place] = undefined;
  }

  /** Decodes row `row`'s `features` features into row `into` of `out`'s columns from `first` on (nulls when no group row joins it); returns the next column's index. */
  decode(row: number, features: number, out: ColumnDecoder, into: number, first: number): number {
    const place = this.placeOf[row] as number;
    const used = place < 0 ? -1 : (this.used[place] as number);
    if (used < 0) return out.nulls(into, first, features);
    if (this.slab) return out.fields(this.slab, this.slabView as DataView, place * (this.slot as number), place * (this.slot as number) + used, into, first);
    const buf = (this.buffers as Array<Buffer | undefined>)[place] as Buffer;
    return out.fields(buf, dataViewOf(buf), 0, buf.length, into, first);
  }

  /**
   * The place of each of a bucket's records, in write order (`order`, else as kept),
   * into `into` (grown as needed): looked up in one tight loop, whose loads of `placeOf`
   * (a random row each, 12 MB for 3M rows) are independent and so served side by side,
   * where a lookup per row as it was written made each slot's load wait for its place's.
   */
  placesOf(records: BucketRecords, order: Uint32Array | undefined, base: number, into: Int32Array): Int32Array {
    const n = records.count;
    const places = into.length >= n ? into : new Int32Array(Math.max(n, 2 * into.length));
    const rows = records.row;
    const placeOf = this.placeOf;
    if (order) for (let k = 0; k < n; k++) places[k] = placeOf[base + (rows[order[k] as number] as number)] as number;
    else for (let k = 0; k < n; k++) places[k] = placeOf[base + (rows[k] as number)] as number;
    return places;
  }

  /** Range k of `fields`: where the features at `place` are (their buffer undefined when no group row joins it, or the row's key is null: place -1). */
  fieldsAt(place: number, fields: RowFields, k: number): void {
    const used = place < 0 ? -1 : (this.used[place] as number);
    if (used < 0) fields.buf[k] = undefined;
    else if (this.slab) {
      fields.buf[k] = this.slab;
      fields.view[k] = this.slabView;
      fields.start[k] = place * (this.slot as number);
    } else {
      const buf = (this.buffers as Array<Buffer | undefined>)[place] as Buffer;
      fields.buf[k] = buf;
      fields.view[k] = dataViewOf(buf);
      fields.start[k] = 0;
    }
  }

  /**
   * Reads a byte of each cache line of the slot at `place` (and its used count), so that a
   * write of it soon after finds them in the cache: see GATHER_AHEAD. Returns them
   * XORed, for the caller to keep (a load whose value goes nowhere may be dropped).
   */
  touch(place: number): number {
    if (place < 0 || !this.slab) return 0;
    const slot = this.slot as number;
    const at = place * slot;
    let seen = this.used[place] as number;
    for (let b = at; b < at + slot; b += CACHE_LINE) seen ^= this.slab[b] as number;
    return seen ^ (this.slab[at + slot - 1] as number);
  }

  /** Writes the features at `place`, or `nulls` when no group row joins it (or place is -1). */
  write(out: BinaryCopyWriter, place: number, nulls: Buffer): void {
    const used = place < 0 ? -1 : (this.used[place] as number);
    if (used < 0) out.write(nulls);
    else if (this.slab) out.writeRangeThrough(this.slab, this.slabView as DataView, place * (this.slot as number), place * (this.slot as number) + used);
    else out.write((this.buffers as Array<Buffer | undefined>)[place] as Buffer);
  }
}

/** Where a chunk's spine tuples carry the order's key (an extra column), if there is an order. */
function sortKeyField(order: SpineOrder | undefined, chunk: Pick<StreamChunk, 'extra'>, spineOutputs: number): number | undefined {
  if (!order) return undefined;
  const at = chunk.extra.findIndex((e) => e.as === order.key);
  if (at < 0) throw new Error(`the stream plan's order key ${order.key} is not one of the chunk's extra columns`);
  return spineOutputs + at;
}

/** An extra column computed in Node: its field in the spine's tuples, the fields of the columns it reads, its function. */
interface InNodeField {
  field: number;
  inputs: number[];
  value: SpineInt4['value'];
}

function inNodeFields(extra: readonly ExtraColumn[], spine: ReadonlyArray<{ name: string }>, spineOutputs: number): InNodeField[] {
  return extra.flatMap((e, k) => (e.inNode ? [{ field: spineOutputs + k, inputs: columnFields(e.as, e.inNode.columns, spine), value: e.inNode.value }] : []));
}

/** The fields (in the spine's tuples) of the output columns an extra column `as` reads. */
function columnFields(as: string, columns: readonly string[], spine: ReadonlyArray<{ name: string }>): number[] {
  return columns.map((name) => {
    const at = spine.findIndex((c) => c.name === name);
    if (at < 0) throw new Error(`the extra column ${as} reads ${name}, not one of the spine's output columns`);
    return at;
  });
}

/**
 * The order of a bucket's records (StreamOptions.order): by key (orderByUint32, which
 * keeps tied keys in record order), then the records whose keys tie (a 32-bit hash
 * repeats: about 700 pairs among 3M flights) by the `then` columns, decoded from the
 * spine's bytes.
 */
function bucketOrder(r: BucketRecords, tie: (r: BucketRecords, a: number, b: number) => number): Uint32Array {
  const n = r.count;
  const key = r.key;
  const records = orderByUint32(key, n);
  for (let i = 0; i < n; ) {
    const k = key[records[i] as number];
    let j = i + 1;
    while (j < n && key[records[j] as number] === k) j++;
    if (j - i > 1) records.subarray(i, j).sort((a, b) => tie(r, a, b));
    i = j;
  }
  return records;
}

/** Compares two records of a chunk whose sort keys are equal: a null key last, then by the order's `then` columns. */
function tieBreaker(spine: ChunkSpine, order: SpineOrder, outputs: ReadonlyArray<{ name: string; pgType: string }>, spineOutputs: number): (r: BucketRecords, a: number, b: number) => number {
  const names = outputs.slice(0, spineOutputs).map((o) => o.name);
  const decoders = outputs.slice(0, spineOutputs).map((o) => fieldDecoder(o.pgType, { timestamps: 'micros' }));
  const missing = order.then.filter((c) => !names.includes(c));
  if (missing.length) throw new Error(`the stream plan's order names ${missing.join(', ')}, not among the spine's output columns`);
  const template = rowTemplate(names);
  const decode = (r: BucketRecords, i: number) => {
    const out: Record<string, unknown> = { ...template };
    decodeRecord(r, i, decoders, names, out);
    return order.then.map((c) => out[c] as number | string | boolean | null);
  };
  return (r, a, b) => {
    const lastNull = Number(spine.nullKeys.has(recordRow(r, a))) - Number(spine.nullKeys.has(recordRow(r, b)));
    if (lastNull !== 0) return lastNull;
    const x = decode(r, a);
    const y = decode(r, b);
    for (let i = 0; i < x.length; i++) {
      const [u, v] = [x[i], y[i]];
      if (u === v) continue;
      if (u === null) return 1;
      if (v === null) return -1;
      return (u as number) < (v as number) ? -1 : 1;
    }
    return 0;
  };
}

/** The join done in memory: each chunk's spine rows and, per join, what each row gets. */
interface Joined {
  spines: ChunkSpine[];
  /** Per chunk, how many rows come before its first (rows are numbered across the chunks, in chunk order). */
  bases: number[];
  results: JoinResult[];
  /**
   * Gives the results' scratch buffers back to the pool, once every row has been written
   * or decoded (and nothing reads them any more). A join that failed keeps them: a read
   * still in flight may write there.
   */
  release(): void;
}

/** This process's (or thread's) scratch buffers for the joined rows' slabs (JoinResult). */
const joinScratch = new ScratchPool();

/**
 * Reads each chunk's spine (on a connection of its own, side by side) and each joined
 * group once for all of them (in as many parts as there are chunks), and joins them.
 */
async function joinInMemory(knex: Knex, q: PitQuery, chunks: Array<Pick<StreamChunk, 'index' | 'extra'>>, options: StreamOptions, stepDone: (step: StreamStep) => void): Promise<Joined> {
  const outputs = pointInTimeColumns(q);
  const spineOutputs = spineColumnCount(q);
  const { signal } = options;

  // 1. Each chunk's spine: its bytes, and per join its keys (as ids, shared by the chunks) and its times.
  const keyIds = q.joins.map(() => new KeyIds());
  const spines = chunks.map(() => newChunkSpine(q.joins.length, options.order !== undefined));
  /** A reader of spineStreamSql's tuples with `c`'s extra columns: each kept in the spine given. */
  const spineReader = (c: Pick<StreamChunk, 'extra'>) => {
    const sortField = sortKeyField(options.order, c, spineOutputs);
    const fields = spineStreamFields(q, c.extra.length);
    const passed = spineOutputs + c.extra.length;
    const computed = inNodeFields(c.extra, outputs.slice(0, spineOutputs), spineOutputs);
    const views = new DataViews();
    return (spine: ChunkSpine, t: BinaryTuple) => {
      for (let k = 0; k < computed.length; k++) {
        const { field, inputs, value } = computed[k] as InNodeField;
        if ((t.length[field] as number) !== 4) throw new Error(`the placeholder of a column computed in Node came with ${t.length[field]} bytes`);
        const view = views.of(t.buf);
        view.setInt32(t.start[field] as number, value(t, view, inputs));
      }
      const row = spine.times.length;
      let key = 0;
      if (sortField !== undefined) {
        const v = int4Field(t, sortField);
        if (v === null) spine.nullKeys.add(row);
        key = unsignedOrder(v);
      }
      // Where the extra columns begin: the end of the last output (a spine whose keys are all outputs sends nothing after them).
      spine.arena.push(key >>> 24, row, key, t.buf, fieldStart(t, 0), fieldEnd(t, spineOutputs - 1), fieldEnd(t, passed - 1));
      for (let ji = 0; ji < q.joins.length; ji++) {
        const field = fields.keys[ji] as number;
        (spine.keys[ji] as GrowableInt32).push((keyIds[ji] as KeyIds).idOf(t.buf, t.start[field] as number, t.length[field] as number));
      }
      spine.times.push(timestampField(t, fields.time) ?? -Infinity);
    };
  };
  const slices = spineSlices(q, chunks, options);
  if (slices) {
    // The chunks read together, each slice of the window on a connection of its own, every
    // row routed to its chunk by the chunk extra: each spine row is read once (read chunk by
    // chunk, every backend scanned all of the window's rows to keep its chunk's).
    const c = chunks[0] as Pick<StreamChunk, 'index' | 'extra'>;
    const at = c.extra.findIndex((e) => e.as === options.chunkExtra);
    const extra = c.extra.map((e, k) => (k === at ? sql`${id(SPINE_CHUNK_COLUMN)} as ${id(e.as)}` : sql`${extraSql(e)} as ${id(e.as)}`));
    const chunkField = spineOutputs + at;
    const indices = chunks.map((x) => x.index);
    // From the spine's segment files where it can: on two threads when every file is there (then its rows go first, and the slices too thin to fill from Postgres after).
    const segmentRows = segmentRowLayout(q, c, at, spineOutputs, outputs, options.order);
    const plan = segmentRows && (await spineSegmentPlan(knex, q, spineOutputs, segmentRows.kept, options.count));
    const threaded = segmentRows && plan && (await spinesOnThreads(q.joins.length, indices, segmentRows, plan));
    if (threaded) {
      spines.splice(0, spines.length, ...threaded.spines);
      keyIds.splice(0, keyIds.length, ...threaded.keyIds);
    }
    const byIndex = new Map(chunks.map((x, ci) => [x.index, spines[ci] as ChunkSpine]));
    const keep = spineReader(c);
    const route = (t: BinaryTuple) => {
      const chunk = (t.length[chunkField] as number) === 2 ? t.buf.readInt16BE(t.start[chunkField] as number) : null;
      const spine = chunk === null ? undefined : byIndex.get(chunk);
      if (!spine) throw new Error(`a spine row of chunk ${chunk} came with a read of chunks ${indices.join(', ')}`);
      keep(spine, t);
    };
    const fromPostgres = (slice: { start: Date; end: Date }) => copyOut(knex, spineStreamSql({ ...q, ...slice, chunk: { index: indices, count: options.count } }, extra, { withChunk: true }), signal, route);
    if (threaded) await Promise.all(threaded.rest.map(fromPostgres));
    else {
      const keepRow = segmentRows && spineRowKeeper(segmentRows.layout, keyIds, segmentRows.values);
      const rest = plan && keepRow && (await spineFromSegments(knex, q, plan, indices, (row, chunk, kept, i) => keepRow(byIndex.get(chunk) as ChunkSpine, row, chunk, kept, i), signal));
      await Promise.all((rest ?? slices).map(fromPostgres));
    }
  } else {
    await Promise.all(
      chunks.map(async (c, ci) => {
        const query = spineStreamSql({ ...q, chunk: { index: c.index, count: options.count } }, c.extra.map((e) => sql`${extraSql(e)} as ${id(e.as)}`));
        const spine = spines[ci] as ChunkSpine;
        const keep = spineReader(c);
        await copyOut(knex, query, signal, (t) => keep(spine, t));
      }),
    );
  }
  stepDone('spine');
  const times = concatFloat64(spines.map((s) => s.times.view()));

  // 2. Each join's features for every spine row, its group read once for all chunks.
  const joined = { ...q, chunk: { index: chunks.map((c) => c.index), count: options.count } };
  const results: JoinResult[] = [];
  const scratches: Scratch[] = [];
  for (const [ji, j] of q.joins.entries()) {
    const widths = j.features.map((f) => FIXED_WIDTH[outputs.find((c) => c.name === f.as)?.pgType ?? '']);
    const slot = widths.every((w) => w !== undefined) ? widths.reduce((n: number, w) => n + 4 + (w as number), 0) : undefined;
    const keys = concatInt32(spines.map((s) => (s.keys[ji] as GrowableInt32).view()));
    const scratch = slot === undefined ? undefined : joinScratch.take();
    if (scratch) scratches.push(scratch);
    // The slab (JoinResult), room for every row to have a place: a fresh one's pages are
    // faulted in on the other core while joinGroup orders the places.
    const faulted = scratch && faultedRoom(scratch, keys.length * (slot as number)).ready;
    results.push(await joinGroup(knex, joined, ji, j, slot, (keyIds[ji] as KeyIds).byText, keys, times, Math.max(1, chunks.length), signal, scratch, faulted));
  }
  stepDone('groups');

  const bases: number[] = [];
  let rowsBefore = 0;
  for (const s of spines) {
    bases.push(rowsBefore);
    rowsBefore += s.times.length;
  }
  return { spines, bases, results, release: () => scratches.splice(0).forEach((scratch) => joinScratch.give(scratch)) };
}

/**
 * How a spine segment's row (spine-segments.ts: its output columns' fields, then the
 * joins' own key fields) is kept in a chunk's spine (spine-rows.ts spineRowKeeper), as
 * spineReader keeps the tuple spineStreamSql sends: its output fields copied, the extra
 * columns' fields computed here (`chunkAt`'s: the row's chunk). With the values the
 * segments keep per row (`kept`), and the functions of the int4 extras they do not
 * (`values`, by extra). Undefined when one of them is computed only by Postgres (no
 * ExtraColumn.inNode or fromTime), or the order's key is not an inNode column (the sort
 * keys read here are its values, never null), or without an order: only an Arena (where
 * an order keeps the rows) takes a row in two parts.
 */
function segmentRowLayout(
  q: PitQuery,
  c: Pick<StreamChunk, 'extra'>,
  chunkAt: number,
  spineOutputs: number,
  outputs: ReadonlyArray<{ name: string }>,
  order: SpineOrder | undefined,
): { layout: SegmentRowLayout; kept: KeptInt4[]; values: Array<SpineInt4['value'] | undefined> } | undefined {
  if (!order) return undefined;
  const sortAt = sortKeyField(order, c, 0) as number;
  if (!c.extra[sortAt]?.inNode) return undefined;
  const spine = outputs.slice(0, spineOutputs);
  const kept: KeptInt4[] = [];
  const values: Array<SpineInt4['value'] | undefined> = [];
  const extras = c.extra.map((e, k): SegmentExtra | undefined => {
    if (k === chunkAt) return { kind: 'chunk' };
    if (e.inNode) {
      const inputs = columnFields(e.as, e.inNode.columns, spine);
      if (e.inNode.kept === undefined) values[k] = e.inNode.value;
      return { kind: 'int4', inputs, keptAt: e.inNode.kept === undefined ? -1 : kept.push({ id: e.inNode.kept, fields: inputs, value: e.inNode.value }) - 1 };
    }
    if (e.fromTime) return { kind: 'byTime', field: columnFields(e.as, [e.fromTime.column], spine)[0] as number, cuts: e.fromTime.cuts };
    return undefined;
  });
  if (!extras.every((e): e is SegmentExtra => e !== undefined)) return undefined;
  // Where each join's key is in a segment's row: an output, or its own key field after them (spineStreamFields counts the extra columns in between).
  const fields = spineStreamFields(q, c.extra.length);
  const keyFields = fields.keys.map((f) => (f < spineOutputs ? f : f - c.extra.length));
  return { layout: { spineOutputs, timeField: fields.time, keyFields, extras, sortAt }, kept, values };
}

/**
 * The spines of a pass's chunks `indices` (of a query with `joins` joins) read from the
 * segments of `plan` on two threads: every other file on this one,
 * the rest on the spine thread (spine-helper.ts), side by side, each keeping the rows of
 * every chunk of the pass; each chunk's spine is then this thread's rows followed by the
 * other's, whose keys' ids are made ours. Undefined (nothing kept) when it cannot: one
 * file, one core, a partition of the window with no file here that the read would fill
 * (a first build), an extra column computed by a function (not plain data a thread is
 * posted), or a file gone before it was read. Else with the slices of the window still to
 * read from Postgres (SpineFiles.rest).
 */
async function spinesOnThreads(joins: number, indices: readonly number[], rows: NonNullable<ReturnType<typeof segmentRowLayout>>, plan: SpineSegmentPlan): Promise<{ spines: ChunkSpine[]; keyIds: KeyIds[]; rest: SpineFiles['rest'] } | undefined> {
  if (rows.values.some((v) => v !== undefined)) return undefined;
  const thread = spineThread();
  const files = thread && (await spineSegmentFiles(plan));
  if (!thread || !files || files.files.length < 2) return undefined;
  const keyIds = Array.from({ length: joins }, () => new KeyIds());
  const spines = indices.map(() => newChunkSpine(joins, true));
  const byIndex = new Map(indices.map((c, i) => [c, spines[i] as ChunkSpine]));
  const keep = spineRowKeeper(rows.layout, keyIds);
  const half = (odd: number) => ({ ...files, files: files.files.filter((_, i) => i % 2 === odd) });
  const [whole, helped] = await Promise.all([
    eachSpineFileRow(half(0), indices, (row, chunk, kept, i) => keep(byIndex.get(chunk) as ChunkSpine, row, chunk, kept, i)),
    thread.read({ files: half(1), chunks: [...indices], layout: rows.layout }),
  ]);
  if (!whole || !helped) return undefined;
  return { spines: spines.map((spine, i) => concatSpines(spine, receivedSpine(helped.spines[i] as PostedSpine, helped.keyTexts, keyIds))), keyIds, rest: files.rest };
}

/**
 * How a pass of several chunks reads its spine in one go: the window [start, end) cut
 * into as many slices of time as there are chunks, each read on a connection of its own
 * (a partitioned spine reads each partition once). Undefined, each chunk read on its
 * own, without a chunk extra, an order (rows routed to a chunk in no order of theirs
 * must be sorted), a window or a join, or with one chunk.
 */
function spineSlices(q: PitQuery, chunks: ReadonlyArray<Pick<StreamChunk, 'extra'>>, options: StreamOptions): Array<{ start: Date; end: Date }> | undefined {
  const { chunkExtra, order } = options;
  if (!chunkExtra || !order || chunks.length < 2 || !q.joins.length || !q.start || !q.end) return undefined;
  if (!chunks.every((c) => c.extra.some((e) => e.as === chunkExtra))) throw new Error(`the stream plan's chunk extra ${chunkExtra} is not one of every chunk's extra columns`);
  const from = q.start.getTime();
  const span = q.end.getTime() - from;
  // The last slice ends where the window does (a cut in between rounds down to the millisecond).
  const cut = (k: number) => (k === chunks.length ? (q.end as Date) : new Date(from + Math.floor((span * k) / chunks.length)));
  return chunks.map((_, k) => ({ start: cut(k), end: cut(k + 1) }));
}

/** Tells `onStep` how long each step took since the last one. */
function stepTimer(options: StreamOptions): (step: StreamStep) => void {
  let last = performance.now();
  return (step) => {
    const now = performance.now();
    options.onStep?.(step, (now - last) / 1000);
    last = now;
  };
}

/**
 * Runs the point-in-time query `q` by the stream plan for `chunks` (of
 * `options.count`): each chunk's spine is read on a connection of its own, side by
 * side; each joined group is read once for all of them; each chunk is written by its
 * own writer. Returns the rows written per chunk.
 */
export async function streamPointInTime(knex: Knex, q: PitQuery, chunks: StreamChunk[], options: StreamOptions): Promise<number[]> {
  const outputs = pointInTimeColumns(q);
  const spineOutputs = spineColumnCount(q);
  const stepDone = stepTimer(options);
  const { spines, bases, results, release } = await joinInMemory(knex, q, chunks, options, stepDone);

  // 3. Each chunk's rows, in the order asked (else as read): the spine's output and extra columns, then the features.
  const nulls = q.joins.map((j) => nullFields(j.features.length));
  const written = await Promise.all(
    chunks.map(async (c, ci) => {
      const spine = spines[ci] as ChunkSpine;
      const base = bases[ci] as number;
      const fields = outputs.length + c.extra.length;
      const tie = options.order ? tieBreaker(spine, options.order, outputs, spineOutputs) : undefined;
      // The spine's columns and the extra ones first, then the features: a row's spine bytes in one copy (a copy costs about as much as its cache miss, whatever its size).
      const columns = [...outputs.slice(0, spineOutputs), ...c.extra.map((e) => ({ name: e.as })), ...outputs.slice(spineOutputs)];
      const { tap } = c;
      tap?.columns(columns);
      // The tap's ranges: the spine's and extra columns, then each join's features.
      const tapped: RowFields = { buf: new Array<Buffer | undefined>(1 + results.length), view: new Array<DataView | undefined>(1 + results.length), start: new Int32Array(1 + results.length), count: new Int32Array([spineOutputs + c.extra.length, ...q.joins.map((j) => j.features.length)]) };
      async function* rows(chunks: ChunkSource): AsyncGenerator<Buffer> {
        const out = new BinaryCopyWriter(undefined, chunks);
        let written = 0;
        // Bucket by bucket (in key order when there is an order: a bucket holds a range of keys), each sorted.
        // Per join, the place of each record of the bucket, in write order (JoinResult.placesOf).
        const places: Int32Array[] = results.map(() => new Int32Array(0));
        for (let bucket = 0; bucket < spine.arena.buckets; bucket++) {
          const records = spine.arena.records(bucket);
          const order = tie ? bucketOrder(records, tie) : undefined;
          for (let ji = 0; ji < results.length; ji++) places[ji] = (results[ji] as JoinResult).placesOf(records, order, base, places[ji] as Int32Array);
          for (let k = 0; k < records.count; k++) {
            const i = order ? (order[k] as number) : k;
            if (k % GATHER_AHEAD === 0) touched[0] = (touched[0] as number) ^ touchAhead(places, k, records.count, results);
            out.tuple(fields);
            writeRecord(out, records, i);
            for (let ji = 0; ji < results.length; ji++) (results[ji] as JoinResult).write(out, (places[ji] as Int32Array)[k] as number, nulls[ji] as Buffer);
            if (tap) {
              tapped.buf[0] = records.blocks[records.block[i] as number];
              tapped.view[0] = records.views[records.block[i] as number];
              tapped.start[0] = records.start[i] as number;
              for (let ji = 0; ji < results.length; ji++) (results[ji] as JoinResult).fieldsAt((places[ji] as Int32Array)[k] as number, tapped, ji + 1);
              tap.row(tapped);
            }
            if ((++written & 4095) === 0) yield* out.take();
          }
        }
        yield* out.end();
      }
      await copyInto(knex, c.writer, sql`copy ${id(c.table)} (${ids(columns.map((x) => x.name))}) from stdin (format binary, freeze)`, rows, options.signal);
      return spine.times.length;
    }),
  );
  release();
  stepDone('write');
  return written;
}

/**
 * Joins of pointInTimeBatches take turns on a thread: one is joined at a time, the next
 * once it is done, while the first one's rows are already handed out. Joined side by
 * side, a thread's partitions all came out late together: a batch-inference reader
 * thread with two partitions joined both for some 600 ms while the main thread, which
 * scores them, waited idle; then the main thread scored them all while the readers
 * waited.
 */
const joinTurns = new Turns();

/**
 * The rows of `q` by the stream plan, decoded into batches of `batchSize` rows held as
 * columns (core/columns.ts: numbers in typed arrays, timestamps as microseconds), in
 * the order Postgres reads the spine: for batch inference, which scores rows and needs
 * no table. The whole spine of `q` is held while its rows are handed out (about 100
 * bytes a row plus the features), so the caller bounds it: a prediction partition's window.
 */
export async function* pointInTimeBatches(knex: Knex, q: PitQuery, options: Pick<StreamOptions, 'signal' | 'onStep'> & { batchSize?: number; arrays?: ColumnArrays } = {}): AsyncGenerator<ColumnBatch> {
  const outputs = pointInTimeColumns(q);
  const batchSize = options.batchSize ?? 5_000;
  const streamOptions: StreamOptions = { count: 1, signal: options.signal, onStep: options.onStep };
  await joinTurns.take(options.signal);
  let joined: Joined;
  try {
    joined = await joinInMemory(knex, q, [{ index: 0, extra: [] }], streamOptions, stepTimer(streamOptions));
  } finally {
    joinTurns.pass();
  }
  const { spines, results, release } = joined;
  const spine = spines[0] as ChunkSpine;
  // No order: one bucket, its records in the order read.
  const records = spine.arena.records(0);
  const { views } = records;
  try {
    for (let first = 0; first < records.count; first += batchSize) {
      const size = Math.min(batchSize, records.count - first);
      const out = new ColumnDecoder(outputs, size, options.arrays);
      for (let k = 0; k < size; k++) {
        const row = first + k;
        const block = records.block[row] as number;
        let next = out.fields(records.blocks[block] as Buffer, views[block] as DataView, records.start[row] as number, records.split[row] as number, k, 0);
        for (let ji = 0; ji < results.length; ji++) next = (results[ji] as JoinResult).decode(row, (q.joins[ji] as PitJoin).features.length, out, k, next);
      }
      yield out.batch;
    }
  } finally {
    // A batch holds its features decoded (copies): the slabs are free once the loop stops.
    release();
  }
}

/** pointInTimeBatches' rows as objects (timestamps as Dates unless asked for microseconds). */
export async function* pointInTimeRows(knex: Knex, q: PitQuery, options: Pick<StreamOptions, 'signal' | 'onStep'> & DecoderOptions & { batchSize?: number } = {}): AsyncGenerator<Array<Record<string, unknown>>> {
  for await (const batch of pointInTimeBatches(knex, q, options)) yield Array.from({ length: batch.size }, (_, i) => rowOf(batch, i, { timestamps: options.timestamps ?? 'date' }));
}

/** COPYs what `fill` yields into a table on `writer`'s connection (its chunks refilled once sent, copy-in.ts). */
async function copyInto(knex: Knex, writer: Knex, statement: Sql, fill: (chunks: ChunkSource) => AsyncIterable<Buffer>, signal: AbortSignal | undefined): Promise<void> {
  const client = (await writer.client.acquireConnection()) as pg.PoolClient & { processID: number };
  const release = cancelOnAbort(knex, client.processID, signal);
  try {
    await copyIn(client, toText(knex, statement), fill, signal);
  } finally {
    release();
    await writer.client.releaseConnection(client);
  }
}

/** The most distinct spine keys sent to Postgres with a group's read (as one JSON literal: a few MB at most). */
const MAX_SPINE_KEYS_SENT = 100_000;

/** Join `ji`: places the group's rows at the spine rows they become visible to, then the running max per key. Its slab is `scratch`'s buffer, written only once `faulted` resolves (faultedRoom). */
async function joinGroup(
  knex: Knex,
  q: PitQuery,
  ji: number,
  j: PitJoin,
  slot: number | undefined,
  keyIndex: Map<string, number>,
  keyIds: Int32Array,
  times: Float64Array,
  reads: number,
  signal: AbortSignal | undefined,
  scratch?: Scratch,
  faulted?: Promise<void>,
): Promise<JoinResult> {
  const rows = keyIds.length;
  const segments = slot === undefined ? undefined : await segmentPlan(knex, q, ji, j);
  // The partitions whose segments are read (from their files, or the first time from Postgres), oldest first.
  const named = (segments?.parts ?? []).flatMap((p) => (p.name ? [{ ...p, name: p.name }] : []));
  // Two chains of reads, each into a buffer of its own, which is free again once its
  // segment is placed (placeSegment copies what it keeps); the buffers are the process's,
  // kept for the next join (segmentScratch). A buffer per chain that has a file to read:
  // a join of one file takes only the pool's largest.
  const chainBuffers = Array.from({ length: Math.min(2, named.length) }, () => segmentScratch.take());
  /** How partition i's file is read: for the rows of the join's window only, into `into` (a chain's buffer, not the slab's `scratch`). */
  const readOf = ({ from, to }: JoinSegments, i: number, into: Scratch): SegmentRead => {
    const p = named[i] as PartitionSegment;
    const cuts = (from !== undefined && from > p.start.getTime() * 1000) || (to !== undefined && to < p.end.getTime() * 1000);
    return { scratch: into, ...(cuts ? { window: { from, to } } : {}) };
  };
  // Each chain's first file, read on the thread pool while this thread orders the places
  // below (a few turns first, to hand it the read): the reads waited for the order, then
  // the placing for the reads. Only read: nothing is placed before the slab is faulted in.
  const firstReads = segments ? chainBuffers.map((into, i) => segments.cache.readFile(named[i] as PartitionSegment & { name: string }, readOf(segments, i, into))) : [];
  await Promise.all(firstReads.map((r) => r.issued));
  // Places: the spine rows with a key, by key, by time within a key.
  const keys = keyIndex.size;
  const { order: rowAt, first } = orderByKeyThenTime(keyIds, times, keys);
  const places = rowAt.length;
  const timeAt = new Float64Array(places);
  const result = new JoinResult(rows, places, slot, scratch);
  for (let place = 0; place < places; place++) {
    const row = rowAt[place] as number;
    timeAt[place] = times[row] as number;
    result.placeOf[row] = place;
  }

  const features = j.features.length;
  // The seeds' probes take the spine's keys from here rather than from a second scan of
  // the spine, unless there are too many to send as one literal.
  const spineKeys = keyIndex.size <= MAX_SPINE_KEYS_SENT ? [...keyIndex.keys()] : undefined;
  /**
   * Places a read's rows. A group's rows mostly come in key and time order (as its
   * partitions were written, and as a segment holds them), so a key's id is looked up
   * again only when its key changes (`key`), and of consecutive rows placed at one place
   * only the newest is copied: the copy waits (a reference to the stream's chunk or the
   * segment, which stays valid) until a row goes elsewhere, or the read ends (`flush`).
   */
  const placer = () => {
    let k = -1;
    /** Where the last row of this key was placed: the next one, mostly later, is searched for from there. */
    let hint = 0;
    let pending = -1;
    let pendingTime = 0;
    let pendingBuf: Buffer = Buffer.alloc(0);
    let pendingStart = 0;
    let pendingEnd = 0;
    const flush = () => {
      if (pending >= 0) result.offer(pending, pendingTime, pendingBuf, pendingStart, pendingEnd);
      pending = -1;
    };
    /** The rows that follow are of key id `next` (-1: a key the spine does not have). */
    const key = (next: number) => {
      k = next;
      if (k >= 0) hint = first[k] as number;
    };
    /** A row of the current key: its features' fields are `buf[start, end)`. */
    const place = (eventTime: number, known: number, buf: Buffer, start: number, end: number) => {
      if (k < 0) return;
      // Known after it happened: visible from when it was known (t >= known); else after it happened (t > event time).
      const inclusive = known > eventTime;
      const enters = inclusive ? known : eventTime;
      const last = first[k + 1] as number;
      const lo = placeFrom(timeAt, first[k] as number, last, hint, enters, inclusive);
      hint = lo;
      if (lo >= last) return;
      if (lo === pending) {
        if (!(eventTime > pendingTime)) return;
      } else flush();
      pending = lo;
      pendingTime = eventTime;
      pendingBuf = buf;
      pendingStart = start;
      pendingEnd = end;
    };
    return { key, place, flush };
  };
  /**
   * A handler of tuples of joinedStreamSql's columns (key text, event time, known,
   * features), placing them as they come; `eventTimeOnly`: the third is an
   * available-at time the policy ignores (a segment's query's tuples).
   */
  const tupleReader = (eventTimeOnly: boolean) => {
    const { key, place, flush } = placer();
    let lastKey: Buffer | undefined;
    const onTuple = (t: BinaryTuple) => {
      if ((t.length[0] as number) < 0) return;
      if (!fieldEquals(t, 0, lastKey)) {
        lastKey = fieldBytes(t, 0) as Buffer;
        key(keyIndex.get(lastKey.toString('utf8')) ?? -1);
      }
      const eventTime = timestampField(t, 1) as number;
      place(eventTime, eventTimeOnly ? eventTime : (timestampField(t, 2) as number), t.buf, features ? fieldStart(t, 3) : 0, features ? fieldEnd(t, t.fields - 1) : 0);
    };
    return { onTuple, flush };
  };
  /** A read of joinedStreamSql's rows (or its seeds), placed as they come. */
  const readRows = async (query: Sql) => {
    const { onTuple, flush } = tupleReader(false);
    await copyOut(knex, query, signal, onTuple);
    flush();
  };
  // Every placing below writes the slab, which a read of /dev/zero may still be filling.
  await faulted;
  if (segments) {
    // The rows from the segments of the partitions the join reads, the seeds (older) from Postgres, side by side.
    const seeds = joinedSeedsStreamSql(q, ji, spineKeys);
    const eventTimeOnly = q.pointInTime === 'event_time';
    /** Places a segment's rows: of each key the spine has, from the first the join reads (by event time) to the query's end. */
    const placeSegment = (seg: Segment) => {
      for (const [text, k] of keyIndex) {
        const run = seg.keys.get(text);
        if (!run) continue;
        const row = segments.from === undefined ? run[0] : lowerBound(seg.eventTime, run[0], run[1], segments.from);
        placeRun(result, timeAt, first[k] as number, first[k + 1] as number, seg, row, run[1], segments.to ?? Number.POSITIVE_INFINITY, eventTimeOnly);
      }
    };
    await Promise.all([
      seeds ? readRows(seeds) : undefined,
      (async () => {
        // Two partitions at a time: each from its segment, or (the first time) from Postgres
        // (one backend each), its rows placed as they come, while its segment is written after.
        const load = async (i: number, into: Scratch, read?: Promise<Segment | undefined>): Promise<void> => {
          const p = named[i];
          if (!p) return;
          const reader = tupleReader(eventTimeOnly);
          const seg = (await read) ?? (await segments.cache.load(knex, segments.spec, p, signal, reader.onTuple, readOf(segments, i, into)));
          if (seg) placeSegment(seg);
          else reader.flush();
          await load(i + 2, into);
        };
        await Promise.all(chainBuffers.map((into, i) => load(i, into, firstReads[i]?.segment)));
      })(),
    ]);
  } else {
    // Read in `reads` parts side by side (one Postgres backend each), placed as they come.
    await Promise.all(Array.from({ length: reads }, (_, index) => readRows(joinedStreamSql(q, ji, { index, count: reads }, spineKeys))));
  }

  // The running max along each key's places; then the ttl drops what is too old.
  for (let k = 0; k < keys; k++) {
    for (let place = (first[k] as number) + 1; place < (first[k + 1] as number); place++) {
      if ((result.newest[place - 1] as number) > (result.newest[place] as number)) result.carry(place - 1, place);
    }
  }
  if (j.ttlMs !== undefined) {
    const ttlUs = j.ttlMs * 1000;
    for (let place = 0; place < places; place++) {
      if ((result.newest[place] as number) < (timeAt[place] as number) - ttlUs) result.clear(place);
    }
  }
  // Given back after a join that succeeded (every read awaited); a join that failed keeps them: a read still in flight may write there.
  for (const buffer of chainBuffers) segmentScratch.give(buffer);
  return result;
}

/**
 * Places rows [row, end) of a segment, one key's run (in event time order), at the
 * places [lowest, last) of that key: what joinGroup's placer does row by row, as one
 * loop whose state is its locals (the placer's state lives in its closures' context,
 * loaded and stored at every row: placing 8.6M airport rows took 0.8 s of a build's main
 * thread). Rows from `stop` on (event time, microseconds) are past the join's window.
 */
function placeRun(result: JoinResult, timeAt: Float64Array, lowest: number, last: number, seg: Segment, row: number, end: number, stop: number, eventTimeOnly: boolean): void {
  const { eventTime: eventTimes, known: knowns, used, slot, slab } = seg;
  let hint = lowest;
  // Of consecutive rows placed at one place, only the newest is offered (as the placer does).
  let pending = -1;
  let pendingTime = 0;
  let pendingRow = 0;
  for (; row < end; row++) {
    const eventTime = eventTimes[row] as number;
    if (eventTime >= stop) break;
    const known = eventTimeOnly ? eventTime : (knowns[row] as number);
    const inclusive = known > eventTime;
    const enters = inclusive ? known : eventTime;
    const lo = placeFrom(timeAt, lowest, last, hint, enters, inclusive);
    hint = lo;
    if (lo >= last) continue;
    if (lo === pending) {
      if (!(eventTime > pendingTime)) continue;
    } else if (pending >= 0) result.offer(pending, pendingTime, slab, pendingRow * slot, pendingRow * slot + (used[pendingRow] as number));
    pending = lo;
    pendingTime = eventTime;
    pendingRow = row;
  }
  if (pending >= 0) result.offer(pending, pendingTime, slab, pendingRow * slot, pendingRow * slot + (used[pendingRow] as number));
}

/**
 * The first of a key's places [lowest, last) at or after the time a row enters (`last`
 * if none), searched for outwards from `hint`, where the key's previous row went: a
 * few steps for rows in time order, where a search of the whole key took about 14.
 */
function placeFrom(timeAt: Float64Array, lowest: number, last: number, hint: number, enters: number, inclusive: boolean): number {
  let lo: number;
  let hi: number;
  if (hint > lowest && !before(timeAt[hint - 1] as number, enters, inclusive)) {
    lo = lowest;
    hi = hint - 1;
  } else {
    lo = hint;
    hi = hint;
    for (let step = 1; hi < last && before(timeAt[hi] as number, enters, inclusive); step *= 2) {
      lo = hi + 1;
      hi = Math.min(last, hi + step);
    }
  }
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(timeAt[mid] as number, enters, inclusive)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Whether a spine row at `at` comes before a joined row that enters at `enters` (so cannot see it): at or after it when `inclusive`, after it when not. */
function before(at: number, enters: number, inclusive: boolean): boolean {
  return inclusive ? at < enters : at <= enters;
}

/** Where a join reads its group's rows from segments: see segmentPlan. */
interface JoinSegments {
  cache: SegmentCache;
  spec: SegmentSpec;
  parts: PartitionSegment[];
  from?: number;
  to?: number;
}

/**
 * Where join `ji` reads its group's rows from segments (segments.ts): the partitions
 * that meet [from, to) in microseconds, the bounds of the rows joinedRowsSql scans;
 * undefined when this process keeps no segments. The caller asks only for groups whose
 * features all have a fixed width (JoinResult's slot), which a segment holds.
 */
async function segmentPlan(knex: Knex, q: PitQuery, ji: number, j: PitJoin): Promise<JoinSegments | undefined> {
  const cache = segmentCache();
  const columns = j.features.map((f) => f.column);
  if (!cache) return undefined;
  const spec: SegmentSpec = { group: j.shape, pin: j.visible, features: columns, keyText: keyText(j.shape.entityKeys.map((k) => col('g', k))) };
  const bounds = joinedRowsFrom(q, ji);
  const froms = [bounds.ttl, bounds.settled].filter((d): d is Date => d !== undefined);
  const from = froms.length ? new Date(Math.max(...froms.map((d) => d.getTime()))) : undefined;
  const parts = await cache.plan(knex, spec, from, q.end);
  if (!parts) return undefined;
  return { cache, spec, parts, ...(from ? { from: from.getTime() * 1000 } : {}), ...(q.end ? { to: q.end.getTime() * 1000 } : {}) };
}
