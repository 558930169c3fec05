/**
 * Spine segments: one range partition of a spine group's rows in a snapshot, as the
 * stream plan reads a spine (spineSegmentSql: the spine's output columns and the joins'
 * own key columns, each field as Postgres sent it), kept on this machine's disk beside
 * the joined groups' column segments (segments.ts), and named, kept and evicted as
 * they are.
 *
 * Why: a training dataset's build read its 3M-row spine from Postgres at every build,
 * which cost the server 3-5 s of CPU (a scan of the snapshot and a field at a time of
 * every row sent) while the build's own thread was busy on the other core: on two
 * cores, that was a quarter of the build's CPU.
 *
 * Why it is exact: for the reasons a column segment is (its name is the last commit
 * that wrote to the partition's range, so a later one gives it another). A segment holds
 * every row of its partition, labelled or not and of every chunk; a read keeps those of
 * its window and, with a label, the labelled ones, as spineStreamSql's filter does. The
 * columns a build adds per row (its chunk, split and shuffle key) are computed in Node
 * from the row's fields, each as its SQL does (pit-stream.ts).
 *
 * A file: MAGIC; the header's length (u32, little-endian) and the header (JSON: rows,
 * kept, bytes); then, each from a multiple of 8, the rows' event times (float64,
 * microseconds since 1970), their chunks' hashes (int32), each kept value (int32, see
 * KeptInt4), where each row's bytes end (u32) and the rows' bytes, in the order read.
 */
import { promises as fs } from 'node:fs';
import type { Knex } from 'knex';
import { room, type Scratch } from '../../core/scratch.ts';
import { GrowableFloat64, GrowableInt32 } from '../../core/growable.ts';
import { copyBytes, dataViewOf, DataViews, fieldEnd, fieldStart, PgText, timestampField, type BinaryTuple } from '../db/index.ts';
import { copyOut } from './copy-read.ts';
import { pointInTimeColumns, spineChunkOutputs, spineSegmentSql, spineStreamFields, type PitQuery } from './point-in-time.ts';
import { align8, readAt, readingFile, segmentCache, segmentScratch, type PartitionSegment, type SegmentCache } from './segments.ts';

const MAGIC = Buffer.from('FTISPN01');

/**
 * A spine segment in memory: row i's event time, the hash its chunk is cut by
 * (spineRowHash; -1: null, chunk 0), and its fields' bytes
 * `bytes[i ? ends[i - 1] : 0, ends[i])`.
 */
export interface SpineSegment {
  rows: number;
  eventTime: Float64Array;
  chunkHash: Int32Array;
  /** Per value kept (SpineSegmentPlan.kept), each row's. */
  kept: Int32Array[];
  ends: Uint32Array;
  bytes: Buffer;
}

/** An int4 a segment keeps per row (pit-stream.ts SpineInt4.kept): its name, the fields it reads, its function. */
export interface KeptInt4 {
  id: string;
  fields: readonly number[];
  value(t: BinaryTuple, view: DataView, fields: readonly number[]): number;
}

/**
 * Where a spine read finds its partitions' segments: the spine group's range partitions
 * that meet the window, each with its segment's name, and which of a segment's rows the
 * read keeps.
 */
export interface SpineSegmentPlan {
  cache: SegmentCache;
  parts: PartitionSegment[];
  /** The window [start, end). */
  start: Date;
  end: Date;
  /** The rows kept of a segment (their window in microseconds, their chunks' count, their fields). */
  read: SpineRowsRead;
  /** Its event time's field. */
  timeField: number;
  /** The fields a chunk's hash reads (spineChunkOutputs). */
  chunkFields: ReadonlyArray<{ field: number; pgType: 'text' | 'bigint' }>;
  /** The values its files keep per row, in order. */
  kept: readonly KeptInt4[];
}

/**
 * Where the spine rows of q's window (cut into `count` chunks) are in segments, whose
 * files keep the values `kept`; undefined when segments cannot stand in for the spine's
 * rows: no window, this process keeps none, the spine's rows are given (q.spine.rows),
 * its chunks are cut by columns whose hash Node does not compute, or the group's rows
 * are not all in range partitions (SegmentCache.planOf). One plan serves a read on one
 * thread (spineFromSegments) or on two (spineSegmentFiles).
 */
export async function spineSegmentPlan(knex: Knex, q: PitQuery, spineOutputs: number, kept: readonly KeptInt4[], count: number): Promise<SpineSegmentPlan | undefined> {
  const cache = segmentCache();
  const chunkFields = spineChunkOutputs(q);
  const { start, end } = q;
  if (!cache || !chunkFields || q.spine.rows || !start || !end) return undefined;
  const shape = q.spine.shape;
  const fields = spineStreamFields(q, 0);
  const outputs = pointInTimeColumns(q).slice(0, spineOutputs);
  const holds = {
    format: MAGIC.toString(),
    spine: [shape.name, shape.version],
    outputs: outputs.map((c) => [c.name, c.pgType]),
    ownKeys: q.joins.map((j) => j.shape.entityKeys.map((k) => j.on[k])),
    chunkFields,
    kept: kept.map((k) => [k.id, k.fields]),
  };
  const parts = await cache.planOf(knex, { group: shape, pin: q.spine.visible }, holds, start, end);
  if (!parts) return undefined;
  const read: SpineRowsRead = {
    from: start.getTime() * 1000,
    to: end.getTime() * 1000,
    ...(q.label === undefined ? {} : { labelField: outputs.findIndex((c) => c.name === q.label) }),
    count,
    rowFields: spineOutputs + fields.keys.filter((k) => k >= spineOutputs).length,
  };
  return { cache, parts, start, end, read, timeField: fields.time, chunkFields, kept };
}

/** The segment in `file` (read into `scratch`'s buffer, valid until its next use), or undefined when it is not there whole. */
async function readSpineSegment(file: string, scratch: Scratch): Promise<SpineSegment | undefined> {
  return readingFile(file, async (handle, size) => {
    const buf = await readAt(handle, room(scratch, size).subarray(0, size), 0);
    return buf && parseSpineSegment(buf);
  });
}

/** Partition `p`'s rows read from Postgres, as a segment, and the segment saved to its file (in the background: SegmentCache.written). */
async function fillSpineSegment(knex: Knex, q: PitQuery, plan: SpineSegmentPlan, p: PartitionSegment & { name: string }, signal: AbortSignal | undefined): Promise<SpineSegment> {
  const pieces: Buffer[] = [];
  let piece = Buffer.allocUnsafe(PIECE_BYTES);
  let used = 0;
  const times = new GrowableFloat64(1 << 14);
  const hashes = new GrowableInt32(1 << 14);
  const kept = plan.kept.map(() => new GrowableInt32(1 << 14));
  const lengths = new GrowableInt32(1 << 14);
  const text = new PgText();
  const views = new DataViews();
  await copyOut(knex, spineSegmentSql(q, p.start, p.end), signal, (t: BinaryTuple) => {
    const start = fieldStart(t, 0);
    const end = fieldEnd(t, t.fields - 1);
    if (used + end - start > piece.length) {
      pieces.push(piece.subarray(0, used));
      piece = Buffer.allocUnsafe(Math.max(PIECE_BYTES, end - start));
      used = 0;
    }
    copyBytes(t.buf, start, end, piece, used);
    used += end - start;
    // A row with no event time is in no window (and its values are never read).
    const time = timestampField(t, plan.timeField);
    times.push(time ?? Number.NaN);
    const view = views.of(t.buf);
    hashes.push(spineRowHash(t, plan.chunkFields, text, view));
    for (let k = 0; k < kept.length; k++) {
      const { fields, value } = plan.kept[k] as KeptInt4;
      (kept[k] as GrowableInt32).push(time === null ? 0 : value(t, view, fields));
    }
    lengths.push(end - start);
  });
  pieces.push(piece.subarray(0, used));
  const file = encodeSpineSegment(
    times.view(),
    hashes.view(),
    kept.map((k) => k.view()),
    lengths.view(),
    pieces,
  );
  void plan.cache.save(p.name, file);
  return parseSpineSegment(file) as SpineSegment;
}

/** Bytes of the pieces a partition's rows are gathered in while it is read from Postgres. */
const PIECE_BYTES = 4 << 20;

function layoutOf(headerBytes: number, rows: number, kept: number, bytes: number) {
  const eventTime = align8(MAGIC.length + 4 + headerBytes);
  const chunkHash = eventTime + rows * 8;
  const keptAt = Array.from({ length: kept }, (_, k) => chunkHash + (k + 1) * rows * 4);
  const ends = chunkHash + (kept + 1) * rows * 4;
  const data = align8(ends + rows * 4);
  return { eventTime, chunkHash, kept: keptAt, ends, data, total: data + bytes };
}

function encodeSpineSegment(times: Float64Array, hashes: Int32Array, kept: Int32Array[], lengths: Int32Array, pieces: readonly Buffer[]): Buffer {
  const rows = times.length;
  const bytes = pieces.reduce((n, b) => n + b.length, 0);
  const header = Buffer.from(JSON.stringify({ rows, kept: kept.length, bytes }));
  const layout = layoutOf(header.length, rows, kept.length, bytes);
  const out = Buffer.alloc(layout.total);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(header.length, MAGIC.length);
  header.copy(out, MAGIC.length + 4);
  new Float64Array(out.buffer, out.byteOffset + layout.eventTime, rows).set(times);
  new Int32Array(out.buffer, out.byteOffset + layout.chunkHash, rows).set(hashes);
  kept.forEach((values, k) => new Int32Array(out.buffer, out.byteOffset + (layout.kept[k] as number), rows).set(values));
  const ends = new Uint32Array(out.buffer, out.byteOffset + layout.ends, rows);
  let end = 0;
  for (let i = 0; i < rows; i++) ends[i] = end += lengths[i] as number;
  let at = layout.data;
  for (const b of pieces) at += b.copy(out, at);
  return out;
}

function parseSpineSegment(file: Buffer): SpineSegment | undefined {
  // Typed arrays over the file need its bytes 8-aligned.
  const bytes = file.byteOffset % 8 === 0 ? file : Buffer.from(file);
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const headerBytes = bytes.readUInt32LE(MAGIC.length);
  let header: { rows: number; kept: number; bytes: number };
  try {
    header = JSON.parse(bytes.toString('utf8', MAGIC.length + 4, MAGIC.length + 4 + headerBytes)) as typeof header;
  } catch {
    return undefined;
  }
  const layout = layoutOf(headerBytes, header.rows, header.kept, header.bytes);
  if (bytes.length !== layout.total) return undefined;
  const ends = new Uint32Array(bytes.buffer, bytes.byteOffset + layout.ends, header.rows);
  if (header.rows > 0 && ends[header.rows - 1] !== header.bytes) return undefined;
  return {
    rows: header.rows,
    eventTime: new Float64Array(bytes.buffer, bytes.byteOffset + layout.eventTime, header.rows),
    chunkHash: new Int32Array(bytes.buffer, bytes.byteOffset + layout.chunkHash, header.rows),
    kept: layout.kept.map((at) => new Int32Array(bytes.buffer, bytes.byteOffset + at, header.rows)),
    ends,
    bytes: bytes.subarray(layout.data, layout.total),
  };
}

/**
 * Hands `each` the rows of `segment` with an event time in [from, to) (microseconds
 * since 1970), a label when `labelField` is given, and a chunk (of `count`) that
 * `inPass` marks: each with its chunk, the values the segment keeps and its index in
 * them, as a tuple of its `fields` fields over the segment's bytes, the same object
 * from row to row.
 */
function eachSpineRow(
  segment: SpineSegment,
  from: number,
  to: number,
  labelField: number | undefined,
  count: number,
  inPass: Uint8Array,
  fields: number,
  each: (row: BinaryTuple, chunk: number, kept: readonly Int32Array[], i: number) => void,
): void {
  const { bytes, ends, eventTime, chunkHash, kept } = segment;
  const row: BinaryTuple = { buf: bytes, fields, start: new Int32Array(fields), length: new Int32Array(fields) };
  const view = dataViewOf(bytes);
  for (let i = 0; i < segment.rows; i++) {
    const time = eventTime[i] as number;
    if (!(time >= from && time < to)) continue;
    const hash = chunkHash[i] as number;
    const chunk = hash < 0 ? 0 : hash % count;
    if (!inPass[chunk]) continue;
    let at = i === 0 ? 0 : (ends[i - 1] as number);
    for (let f = 0; f < fields; f++) {
      const length = view.getInt32(at);
      row.start[f] = at + 4;
      row.length[f] = length;
      at += 4 + (length > 0 ? length : 0);
    }
    if (labelField !== undefined && (row.length[labelField] as number) < 0) continue;
    each(row, chunk, kept, i);
  }
}

/**
 * The hash a spine row's chunk is cut by, as chunkOf computes it in SQL
 * (point-in-time.ts): hashtext of its chunk columns' text joined by '|', its low 31
 * bits (the chunk: that modulo the count); -1 when one of them is null (chunk 0).
 */
function spineRowHash(row: BinaryTuple, columns: ReadonlyArray<{ field: number; pgType: 'text' | 'bigint' }>, text: PgText, view: DataView): number {
  text.reset();
  for (let k = 0; k < columns.length; k++) {
    const { field, pgType } = columns[k] as { field: number; pgType: 'text' | 'bigint' };
    const length = row.length[field] as number;
    if (length < 0) return -1;
    if (k > 0) text.ascii('|');
    if (pgType === 'text') text.raw(row.buf, row.start[field] as number, length);
    else text.int8(view, row.start[field] as number);
  }
  return text.hash() & 0x7fffffff;
}

/**
 * A window that covers at least this share of a partition with no segment reads the
 * partition whole and fills its segment (at most twice the rows it needs); a smaller one
 * fills it once the windows asked for add up to the whole partition (SegmentCache.fills).
 * A training dataset's window starts at its spine's first row and ends after its last,
 * a little inside its first and last partitions: those fill at its first build.
 */
const FILL_SHARE = 0.5;

/**
 * What a read of the window [from, to) (milliseconds) does with partition `p`, which has
 * no file whole: 'fill' it (read it whole from Postgres and write its file: see
 * FILL_SHARE), or read its part of the window from Postgres (that slice).
 */
async function withoutFile(cache: SegmentCache, p: PartitionSegment & { name: string }, from: number, to: number): Promise<'fill' | { start: Date; end: Date }> {
  const lo = Math.max(from, p.start.getTime());
  const hi = Math.min(to, p.end.getTime());
  const share = (hi - lo) / (p.end.getTime() - p.start.getTime());
  if (share >= FILL_SHARE || (await cache.fills(p, { from: lo * 1000, to: hi * 1000 }))) return 'fill';
  return { start: new Date(lo), end: new Date(hi) };
}

/**
 * Reads the spine rows of the plan's window and of the chunks `chunks` from the spine's
 * segments where it can, each handed to `each` with its chunk (a tuple of its output
 * fields, then the joins' own key fields, reused from row to row) and the values the
 * plan's segments keep (their arrays, and its index there). Returns the parts of the
 * window still to read from Postgres (those of partitions with no segment that this read
 * does not fill).
 */
export async function spineFromSegments(
  knex: Knex,
  q: PitQuery,
  plan: SpineSegmentPlan,
  chunks: readonly number[],
  each: (row: BinaryTuple, chunk: number, kept: readonly Int32Array[], i: number) => void,
  signal: AbortSignal | undefined,
): Promise<Array<{ start: Date; end: Date }>> {
  const [from, to] = [plan.start.getTime(), plan.end.getTime()];
  const feed = rowFeeder(plan.read, chunks, each);

  // Partitions no commit of the snapshot wrote to hold no rows in it.
  const named = plan.parts.filter((p): p is PartitionSegment & { name: string } => p.name !== undefined);
  const rest: Array<{ start: Date; end: Date }> = [];
  // Two at a time: a partition read from Postgres (a first build) keeps a backend busy while this thread places another's rows.
  await onTwoChains(named, async (p, scratch) => {
    let segment = await readSpineSegment(plan.cache.fileOf(p.name), scratch);
    if (!segment) {
      const without = await withoutFile(plan.cache, p, from, to);
      if (without !== 'fill') {
        rest.push(without);
        return;
      }
      segment = await fillSpineSegment(knex, q, plan, p, signal);
    }
    feed(segment);
  });
  return rest;
}

/** Which of a spine segment's rows a read keeps (eachSpineRow): plain data, posted to a spine thread as it is. */
interface SpineRowsRead {
  /** The window, in microseconds since 1970: [from, to). */
  from: number;
  to: number;
  /** The label's field, when only labelled rows are kept. */
  labelField?: number;
  /** Chunks the spine is cut into. */
  count: number;
  /** Fields of a segment's row. */
  rowFields: number;
}

/** Hands `each` the rows `read` keeps of a segment, of the chunks `chunks`. */
function rowFeeder(read: SpineRowsRead, chunks: readonly number[], each: (row: BinaryTuple, chunk: number, kept: readonly Int32Array[], i: number) => void): (segment: SpineSegment) => void {
  const inPass = new Uint8Array(read.count);
  for (const c of chunks) inPass[c] = 1;
  return (segment) => eachSpineRow(segment, read.from, read.to, read.labelField, read.count, inPass, read.rowFields, each);
}

/**
 * A spine's window read from its segments' files (SpineRowsRead): the files, in the order
 * of their partitions, and the slices of the window to read from Postgres, of partitions
 * with no file that the read does not fill.
 */
export interface SpineFiles extends SpineRowsRead {
  files: string[];
  rest: Array<{ start: Date; end: Date }>;
}

/**
 * The files of the plan's partitions, when every one of them that holds rows in the
 * snapshot has its file here, but those with a slice of the window too thin
 * to fill (the 1 ms of July at the end of the flights' window, say): a thread of its own
 * can read some of them (spine-helper.ts). Undefined when not (a first build, which
 * fills them). A partition with no file is tallied as spineFromSegments tallies it.
 */
export async function spineSegmentFiles(plan: SpineSegmentPlan): Promise<SpineFiles | undefined> {
  const [from, to] = [plan.start.getTime(), plan.end.getTime()];
  const files: string[] = [];
  const rest: SpineFiles['rest'] = [];
  for (const p of plan.parts) {
    if (p.name === undefined) continue;
    const file = plan.cache.fileOf(p.name);
    if (await fs.stat(file).then(() => true, () => false)) {
      files.push(file);
      continue;
    }
    const without = await withoutFile(plan.cache, { ...p, name: p.name }, from, to);
    if (without === 'fill') return undefined;
    rest.push(without);
  }
  return { ...plan.read, files, rest };
}

/**
 * Hands `each` the rows of `files` (see spineFromSegments) of the chunks `chunks`, two
 * files at a time; false when one cannot be read whole (evicted since they were listed,
 * say): what was handed before is then to be dropped.
 */
export async function eachSpineFileRow(files: SpineFiles, chunks: readonly number[], each: (row: BinaryTuple, chunk: number, kept: readonly Int32Array[], i: number) => void): Promise<boolean> {
  const feed = rowFeeder(files, chunks, each);
  // While this thread walks one file's rows, the next one is read.
  return await onTwoChains(files.files, async (file, scratch) => {
    const segment = await readSpineSegment(file, scratch);
    if (segment) feed(segment);
    return segment !== undefined;
  });
}

/**
 * Runs `work` on each of `items` in turn on two chains side by side, each with a buffer
 * of the process's (segmentScratch) to read a file into; both stop once `work` returns
 * false, and so does the call (else true).
 */
async function onTwoChains<T>(items: readonly T[], work: (item: T, scratch: Scratch) => Promise<boolean | void>): Promise<boolean> {
  const todo = [...items];
  let going = true;
  await Promise.all(
    [0, 1].map(async () => {
      const scratch = segmentScratch.take();
      try {
        for (let item = todo.shift(); item !== undefined && going; item = todo.shift()) {
          if ((await work(item, scratch)) === false) going = false;
        }
      } finally {
        segmentScratch.give(scratch);
      }
    }),
  );
  return going;
}
