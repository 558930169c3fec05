/**
 * Column segments: one range partition of a group's offline rows, as of the last
 * commit that wrote to its range, kept on this machine's disk as columns, so that the
 * stream plan's point-in-time joins (pit-stream.ts) read a partition no commit changed
 * since from a file instead of from Postgres.
 *
 * Why: of a join's time, Postgres spends most producing the joined group's rows. A
 * binary COPY of the flights example's 8.6M airport rows with the 12 features a view
 * joins took 18.6 s of the server's CPU (2 of those 15 fields: 4.8 s): a cost per
 * field of every row, paid again by every dataset build and every batch-inference
 * partition. A segment holds the same rows' bytes, read at the speed of the disk (its
 * page cache, mostly).
 *
 * Why it is exact: a commit writes rows only within its event-time range
 * (feature_commits.min_event_time to max_event_time: the rows it inserts and the ones
 * it supersedes into history), so a range partition's rows in a snapshot are its rows
 * in the snapshot of the last commit, at or before the snapshot's pin, whose range
 * meets the partition's. A segment is named by that commit (id and visible_seq), the
 * partition's table (oid: compaction keeps it, and keeps its rows), the cluster
 * (system identifier), database and schema, and the columns it holds: a later commit
 * that writes to the range gives the partition a new name, and no file is ever
 * changed. A snapshot pinned before that commit still finds the old one.
 *
 * A segment's rows are sorted by key (its text, as the join compares it), then event
 * time: a join reads, for each key its spine has, the run of rows from the time it
 * needs on. Each row keeps its features' fields exactly as Postgres sent them (lengths
 * included), so a dataset written from a segment is byte for byte the one written from
 * a COPY. Only groups whose features all have a fixed width (numbers, booleans,
 * timestamps) are kept; text ones are read from Postgres as before.
 *
 * The files live under FtiConfig.cacheDir/segments, at most segmentCacheMb of them:
 * the least recently used go first. A file that cannot be read whole is read again
 * from Postgres.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { loadConfig } from '../../core/config.ts';
import { room, ScratchPool, type Scratch } from '../../core/scratch.ts';
import { copyBytes, fieldBytes, fieldEnd, fieldEquals, fieldStart, id, ids, join, raw, sql, timestampField, type BinaryTuple, type Sql } from '../db/index.ts';
import { PG_TYPE } from '../../features/schema.ts';
import { copyOut } from './copy-read.ts';
import { lowerBound, orderByKeyThenTime } from './key-order.ts';
import type { SnapshotPin } from './commits.ts';
import { snapshotSql } from './reads.ts';
import { groupTables, rangePartitions, type GroupShape } from './tables.ts';

/** What a segment holds: the group's rows in a snapshot, its key as `keyText` gives it, these features. */
export interface SegmentSpec {
  group: GroupShape;
  pin: SnapshotPin;
  /** The features, in order: each of a fixed width. */
  features: readonly string[];
  /** The rows' key as text (point-in-time.ts keyText over the group's entity keys, alias `g`). */
  keyText: Sql;
}

/** A partition of the group and the name of its segment in a snapshot (undefined: no commit of the snapshot wrote to its range). */
export interface PartitionSegment {
  partition: string;
  start: Date;
  end: Date;
  name: string | undefined;
}

/**
 * A segment in memory: row i's event time and available-at time (microseconds since
 * 1970), and its features' fields (`used[i]` bytes at `slab[i * slot]`, as Postgres
 * sent them). The rows of key k are `keys.get(k)`, [from, to), by event time.
 */
export interface Segment {
  rows: number;
  slot: number;
  keys: Map<string, readonly [number, number]>;
  eventTime: Float64Array;
  known: Float64Array;
  used: Int32Array;
  slab: Buffer;
  /** Bytes of its file. */
  bytes: number;
}

/**
 * How a join reads a segment's file: only the rows of `window` (microseconds since
 * 1970: of each key, those from the first at or after `from` to the last before `to`),
 * and into `scratch`'s buffer, which the same caller's next read reuses.
 */
export interface SegmentRead {
  window?: { from?: number; to?: number };
  /**
   * Reused by one caller's reads, one after another: a file read whole lies in its
   * buffer, so the segment is valid only until the next read with it. A fresh buffer
   * costs the kernel a page fault per 4 KiB (a month of the flights' airport rows, 233 MB:
   * about 0.3 s of CPU, most of reading it); a buffer read into before, a copy.
   */
  scratch?: Scratch;
}

/**
 * This process's (or thread's) scratch buffers for segment reads, so that one partition's
 * read fills the buffer the partition before it faulted in (a batch-inference partition
 * of the flights reads some 60 MB of a segment).
 */
export const segmentScratch = new ScratchPool();

/** A window that keeps at most this share of a file's rows is read in pieces (positioned reads of each key's run); more, whole. */
const WINDOW_READ_BELOW = 0.5;

const MAGIC = Buffer.from('FTISEG01');
/**
 * How long evict keeps a file that is not a segment after its last change: a temporary
 * file an hour old was left by a process that stopped while writing it; a tally of the
 * shares asked for (SegmentCache.fills) not asked for in a day is of a segment most
 * likely superseded.
 */
const KEPT_MS: Readonly<Record<string, number>> = { '.tmp': 3_600_000, '.asked': 24 * 3_600_000 };

/** Rows gathered per block while a segment is read from Postgres. */
const BLOCK_ROWS = 1 << 16;

/** `n` rounded up to a multiple of 8: where a file's typed arrays start. */
export const align8 = (n: number) => Math.ceil(n / 8) * 8;

/** A read of a segment's file under way (SegmentCache.readFile). */
export interface FileRead {
  segment: Promise<Segment | undefined>;
  /**
   * Resolved once the read of the file's rows is with the thread pool (after a few turns
   * of this thread: the open, the file's size and head), or the read is over: from then
   * on it goes on while this thread is busy.
   */
  issued: Promise<void>;
}

const noop = () => undefined;

export class SegmentCache {
  /**
   * Segments this process is loading, by name, and those it read from Postgres until
   * their files are written: a second reader shares the first's.
   */
  private readonly loading = new Map<string, Promise<Segment>>();
  /** Files being written. */
  private readonly writing = new Set<Promise<void>>();

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {}

  /**
   * The group's range partitions that meet [from, to) (all of them without bounds),
   * oldest first, each with its segment's name in the spec's snapshot; undefined when
   * segments cannot stand in for the group's rows: some of them are outside its range
   * partitions, or the cluster's identity cannot be read.
   */
  async plan(knex: Knex, spec: SegmentSpec, from?: Date, to?: Date): Promise<PartitionSegment[] | undefined> {
    const { group } = spec;
    const columns = { keys: group.entityKeys, eventTime: group.eventTime, features: spec.features.map((f) => [f, group.columns.find((c) => c.name === f)?.type]) };
    return this.planOf(knex, spec, { format: MAGIC.toString(), columns }, from, to);
  }

  /**
   * As plan, for a file of any kind: `holds` (its format and what it holds, as JSON)
   * goes into every name, so that files of other kinds or columns never share one.
   */
  async planOf(knex: Knex, source: { group: GroupShape; pin: SnapshotPin }, holds: { format: string } & Record<string, unknown>, from?: Date, to?: Date): Promise<PartitionSegment[] | undefined> {
    const { group, pin } = source;
    const { format, ...held } = holds;
    const all = await rangePartitions(knex, group);
    const children = (await raw(knex, sql`select count(*)::int as n from pg_inherits where inhparent = to_regclass(${groupTables(group.name, group.version).offline})`)) as { rows: Array<{ n: number }> };
    if ((children.rows[0]?.n ?? -1) !== all.length) return undefined;
    const parts = all.filter((p) => (from === undefined || p.end > from) && (to === undefined || p.start < to));
    if (parts.length === 0) return [];
    let identity: { rows: Array<{ system: string; db: string; schema: string }> };
    try {
      identity = (await raw(knex, sql`select (select system_identifier::text from pg_control_system()) as system, current_database() as db, current_schema() as schema`)) as typeof identity;
    } catch {
      return undefined;
    }
    const cluster = identity.rows[0];
    if (!cluster?.system) return undefined;
    const values = join(
      parts.map((p) => sql`(${p.partition}::text, ${p.start}::timestamptz, ${p.end}::timestamptz)`),
      ', ',
    );
    const lastWrites = (await raw(
      knex,
      sql`select v.name, to_regclass(v.name)::oid::text as oid, c.id::text as commit_id, c.visible_seq::text as seq
          from (values ${values}) v(name, lo, hi)
          left join lateral (
            select c.id, c.visible_seq from feature_commits c
            where c.feature_group_id = ${pin.featureGroupId} and c.status = 'committed' and c.visible_seq <= ${pin.visibleSeq}
              and c.min_event_time < v.hi and c.max_event_time >= v.lo
            order by c.visible_seq desc limit 1
          ) c on true`,
    )) as { rows: Array<{ name: string; oid: string | null; commit_id: string | null; seq: string | null }> };
    const byName = new Map(lastWrites.rows.map((r) => [r.name, r]));
    return parts.map((p) => {
      const last = byName.get(p.partition);
      const name =
        last?.commit_id && last.oid
          ? createHash('sha256')
              .update(JSON.stringify({ format, ...cluster, table: last.oid, commit: last.commit_id, seq: last.seq, ...held }))
              .digest('hex')
              .slice(0, 40)
          : undefined;
      return { ...p, name };
    });
  }

  /**
   * Partition `p`'s segment from its file alone, read as `read` asks: the caller's own
   * read (its window, into its buffer), shared with no one. Undefined when the file is
   * not there whole, or while this process fills it (load shares that fill).
   */
  readFile(p: PartitionSegment & { name: string }, read: SegmentRead): FileRead {
    if (this.loading.has(p.name)) return { segment: Promise.resolve(undefined), issued: Promise.resolve() };
    let issue!: () => void;
    const issuedRows = new Promise<void>((resolve) => (issue = resolve));
    const segment = readSegmentFile(this.fileOf(p.name), read, issue);
    return { segment, issued: Promise.race([issuedRows, segment.then(noop, noop)]) };
  }

  /**
   * Partition `p`'s segment: from its file, else read from Postgres. One read from
   * Postgres is sorted, encoded and written to its file after the read; until then
   * this process shares it from memory.
   *
   * A read from Postgres for a window of the partition (`read.window`, with a `reader`)
   * fills the segment only once the joins that asked for it, this one included, asked
   * for a whole partition's rows (tallied on disk, see fills); until then it reads the
   * window's rows alone and hands them to the reader (undefined). Filling reads every
   * row of the partition and writes them to disk: a join of two days of a month, after
   * a commit wrote to that month, took 2.1-2.6 s by filling against 0.6 s by its window
   * (the bench's chain, where every run commits). The rule is a ski rental's: the
   * windows read from Postgres never cost more than one fill before the file is made,
   * and a partition no commit changes is filled once the joins read it whole, in one
   * or in parts.
   *
   * With a `reader`, a read from Postgres hands it each row as it comes (the
   * segment's query's tuples: key text, event time, available-at time, the features)
   * and resolves to undefined once the read is done, without waiting for the sort and
   * the write: a join's first read of a partition costs what it cost before segments
   * (reading it from Postgres), plus a copy of each row.
   */
  async load(knex: Knex, spec: SegmentSpec, p: PartitionSegment & { name: string }, signal?: AbortSignal, reader?: (t: BinaryTuple) => void, read?: SegmentRead): Promise<Segment | undefined> {
    const file = this.fileOf(p.name);
    if (read) {
      const kept = await this.readFile(p, read).segment;
      if (kept) return kept;
    }
    if (reader && !this.loading.has(p.name) && !(await this.fills(p, read?.window))) {
      await copyOut(knex, segmentRowsSql(spec, p, read?.window), signal, reader);
      return undefined;
    }
    const shared = this.loading.get(p.name);
    if (shared) return shared;
    let readDone!: (fromPostgres: boolean) => void;
    const done = new Promise<boolean>((resolve) => (readDone = resolve));
    const loading = (async () => {
      // A caller that read the file itself (above) found none whole: from Postgres.
      const kept = read ? undefined : await readSegmentFile(file, {});
      if (kept) {
        this.loading.delete(p.name);
        readDone(false);
        return kept;
      }
      const encode = await readFromPostgres(knex, spec, p, signal, reader);
      readDone(true);
      // The sort and the encoding wait for the reader's turn to end (it places the rows it was handed).
      await new Promise((resolve) => setImmediate(resolve));
      const bytes = encode();
      void this.save(p.name, bytes).finally(() => this.loading.delete(p.name));
      return parseSegment(bytes) as Segment;
    })();
    loading.catch(() => {
      this.loading.delete(p.name);
      readDone(false);
    });
    this.loading.set(p.name, loading);
    if (!reader) return loading;
    // Read from Postgres: the reader has had every row. Else the segment, or the read's error.
    return (await Promise.race([done, loading.then(() => false)])) ? undefined : loading;
  }

  /**
   * Whether a read of `window` (microseconds; all of it without one) fills `p`'s
   * segment (see load). The shares asked for are tallied in a file beside the segment's,
   * `<name>.asked`, a line each: the joins of every thread and process that keeps its
   * segments here add up (a batch inference's partitions, side by side on reader
   * threads, ask for a third of a month each). Two that reach a whole partition at
   * once both fill it; their files are the same.
   */
  async fills(p: PartitionSegment & { name: string }, window: SegmentRead['window']): Promise<boolean> {
    const whole = windowIn(p, undefined);
    const asked = windowIn(p, window);
    const share = whole.to > whole.from ? Math.max(0, asked.to - asked.from) / (whole.to - whole.from) : 1;
    // Less a rounding's error: three thirds of a partition fill it.
    if (share >= 1 - 1e-9) return true;
    const tally = this.tally(p.name);
    try {
      await fs.mkdir(this.dir, { recursive: true });
      // Appended (O_APPEND): each line lands whole, whoever else appends.
      await fs.appendFile(tally, `${share}\n`);
      const lines = (await fs.readFile(tally, 'utf8')).split('\n');
      // A new tally: the stale ones go with it, as after a segment's write.
      if (lines.length === 2) await this.evict();
      return lines.reduce((sum, line) => sum + (Number(line) || 0), 0) >= 1 - 1e-9;
    } catch {
      // No tally (a read-only cache): every read fills, as before tallies.
      return true;
    }
  }

  /** The file that tallies the shares asked for of a segment with no file yet (see fills). */
  private tally(name: string): string {
    return path.join(this.dir, `${name}.asked`);
  }

  /** Resolves once the segments read so far are written to their files. */
  async written(): Promise<void> {
    await Promise.all([...this.writing]);
  }

  /** Where segment `name`'s file is. */
  fileOf(name: string): string {
    return path.join(this.dir, `${name}.seg`);
  }

  /** Writes segment `name`'s file in the background (see written), resolved once done; a file not written is read from Postgres again next time. */
  save(name: string, bytes: Buffer): Promise<void> {
    const written = this.store(this.fileOf(name), bytes).finally(() => this.writing.delete(written));
    this.writing.add(written);
    return written;
  }

  /** Writes a segment's file whole (a temporary file renamed), then evicts; a file not written is read from Postgres again next time. */
  private async store(file: string, bytes: Buffer): Promise<void> {
    const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await fs.mkdir(this.dir, { recursive: true });
      await fs.writeFile(temp, bytes);
      await fs.rename(temp, file);
      await fs.rm(this.tally(path.basename(file, '.seg')), { force: true });
      await this.evict();
    } catch {
      await fs.rm(temp, { force: true });
    }
  }

  /** Removes the least recently used files until the rest fit in maxBytes. */
  private async evict(): Promise<void> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    const files = (
      await Promise.all(
        names
          .filter((n) => n.endsWith('.seg') || KEPT_MS[path.extname(n)] !== undefined)
          .map(async (n) => {
            const at = path.join(this.dir, n);
            const stat = await fs.stat(at).catch(() => undefined);
            const kept = KEPT_MS[path.extname(n)];
            const stale = stat !== undefined && kept !== undefined && stat.mtimeMs < Date.now() - kept;
            return stat && (n.endsWith('.seg') || stale) ? { at, size: stat.size, used: stale ? 0 : stat.mtimeMs } : undefined;
          }),
      )
    ).filter((f) => f !== undefined);
    let total = files.reduce((n, f) => n + f.size, 0);
    for (const f of files.sort((a, b) => a.used - b.used)) {
      // Stale temporary files (used 0, first) go whatever the total.
      if (total <= this.maxBytes && f.used !== 0) break;
      await fs.rm(f.at, { force: true });
      total -= f.size;
    }
  }
}

let processCache: SegmentCache | null | undefined;

/** This process's segment cache (FtiConfig.segmentCacheMb under cacheDir/segments), or undefined when it keeps none. */
export function segmentCache(): SegmentCache | undefined {
  if (processCache === undefined) {
    const config = loadConfig();
    processCache = config.segmentCacheMb > 0 ? new SegmentCache(path.join(config.cacheDir, 'segments'), config.segmentCacheMb * 2 ** 20) : null;
  }
  return processCache ?? undefined;
}

/**
 * Partition `p`'s rows in the spec's snapshot (those of `window` alone, microseconds,
 * when given), as a segment holds them: key text, event time, available-at time, the
 * features.
 */
function segmentRowsSql(spec: SegmentSpec, p: PartitionSegment, window?: SegmentRead['window']): Sql {
  const te = id(spec.group.eventTime);
  const { from, to } = windowIn(p, window);
  // The window's bounds are whole milliseconds (they come from dates); rounded outwards
  // all the same, since a row outside it only costs its placing.
  return sql`select ${spec.keyText} as _key, g.${te}, g._available_at, ${ids([...spec.features])}
      from (${snapshotSql(spec.group, spec.pin)}) g
      where g.${te} >= ${new Date(Math.floor(from / 1000))} and g.${te} < ${new Date(Math.ceil(to / 1000))}`;
}

/** The part of partition `p` that `window` covers (all of it without one), in microseconds since 1970. */
function windowIn(p: PartitionSegment, window: SegmentRead['window']): { from: number; to: number } {
  const start = p.start.getTime() * 1000;
  const end = p.end.getTime() * 1000;
  return { from: Math.max(start, window?.from ?? start), to: Math.min(end, window?.to ?? end) };
}

/**
 * Partition `p`'s rows in the spec's snapshot, by binary COPY, as a segment file's
 * bytes. Postgres sends them unsorted; they are ordered here (a sort of a partition's
 * wide rows there took longer than reading them).
 */
async function readFromPostgres(knex: Knex, spec: SegmentSpec, p: PartitionSegment, signal: AbortSignal | undefined, reader: ((t: BinaryTuple) => void) | undefined): Promise<() => Buffer> {
  const { group, features } = spec;
  const query = segmentRowsSql(spec, p);
  const slot = features.reduce((n, f) => n + 4 + fixedWidth(group, f), 0);
  const blocks: Block[] = [];
  const chunks: Buffer[] = [];
  let block = newBlock();
  let inBlock = 0;
  const keyIds = new Map<string, number>();
  const keyOf: number[] = [];
  const timeOf: number[] = [];
  let lastKey: Buffer | undefined;
  let k = 0;
  const onTuple = (t: BinaryTuple) => {
    if (!fieldEquals(t, 0, lastKey)) {
      lastKey = fieldBytes(t, 0) as Buffer;
      const text = lastKey.toString('utf8');
      k = keyIds.get(text) ?? keyIds.size;
      keyIds.set(text, k);
    }
    if (inBlock === BLOCK_ROWS) {
      blocks.push(block);
      block = newBlock();
      inBlock = 0;
    }
    const eventTime = timestampField(t, 1) as number;
    keyOf.push(k);
    timeOf.push(eventTime);
    block.eventTime[inBlock] = eventTime;
    block.known[inBlock] = timestampField(t, 2) as number;
    const start = features.length ? fieldStart(t, 3) : 0;
    const end = features.length ? fieldEnd(t, t.fields - 1) : 0;
    block.used[inBlock] = end - start;
    // Not copied yet: the stream's chunks stay valid, and are kept until the segment is encoded.
    if (t.buf !== chunks[chunks.length - 1]) chunks.push(t.buf);
    block.chunk[inBlock] = chunks.length - 1;
    block.start[inBlock] = start;
    inBlock++;
    reader?.(t);
  };
  await copyOut(knex, query, signal, onTuple);
  blocks.push(block);
  return () => {
    const { order, first } = orderByKeyThenTime(keyOf, timeOf, keyIds.size);
    const keys: Array<[string, number, number]> = [...keyIds].map(([text, id]) => [text, first[id] as number, first[id + 1] as number]);
    return encodeSegment(order, slot, keys, blocks, chunks);
  };
}

/** Rows read from Postgres, BLOCK_ROWS at most: their times, and where their features' fields are (in which of the stream's chunks, from where, how many bytes). */
interface Block {
  eventTime: Float64Array;
  known: Float64Array;
  used: Int32Array;
  chunk: Int32Array;
  start: Int32Array;
}

function newBlock(): Block {
  return { eventTime: new Float64Array(BLOCK_ROWS), known: new Float64Array(BLOCK_ROWS), used: new Int32Array(BLOCK_ROWS), chunk: new Int32Array(BLOCK_ROWS), start: new Int32Array(BLOCK_ROWS) };
}

/** Bytes of a field of each Postgres type the feature store writes, or undefined when they vary (text). */
export const FIXED_WIDTH: Record<string, number | undefined> = { 'double precision': 8, bigint: 8, boolean: 1, timestamptz: 8 };

/** Bytes of a feature's field (its length not included). */
function fixedWidth(group: GroupShape, feature: string): number {
  const type = group.columns.find((c) => c.name === feature)?.type;
  const width = type === undefined ? undefined : FIXED_WIDTH[PG_TYPE[type]];
  if (width === undefined) throw new Error(`feature ${feature} of group ${group.name} has no fixed width: a segment cannot hold it`);
  return width;
}

/**
 * A segment's file: MAGIC; the header's length (u32, little-endian) and the header
 * (JSON: rows, slot, keys: [text, from, to]); then, each from a multiple of 8, the event times and
 * available-at times (float64), the used bytes (int32) and the slab.
 */
function encodeSegment(order: Int32Array, slot: number, keys: Array<[string, number, number]>, blocks: Block[], chunks: Buffer[]): Buffer {
  const rows = order.length;
  const header = Buffer.from(JSON.stringify({ rows, slot, keys }));
  const layout = sections(header.length, rows, slot);
  const out = Buffer.alloc(layout.total);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(header.length, MAGIC.length);
  header.copy(out, MAGIC.length + 4);
  const eventTime = new Float64Array(out.buffer, out.byteOffset + layout.eventTime, rows);
  const known = new Float64Array(out.buffer, out.byteOffset + layout.known, rows);
  const used = new Int32Array(out.buffer, out.byteOffset + layout.used, rows);
  for (let i = 0; i < rows; i++) {
    const row = order[i] as number;
    const b = blocks[Math.floor(row / BLOCK_ROWS)] as Block;
    const at = row % BLOCK_ROWS;
    eventTime[i] = b.eventTime[at] as number;
    known[i] = b.known[at] as number;
    used[i] = b.used[at] as number;
    const start = b.start[at] as number;
    copyBytes(chunks[b.chunk[at] as number] as Buffer, start, start + (b.used[at] as number), out, layout.slab + i * slot);
  }
  return out;
}

function sections(headerBytes: number, rows: number, slot: number) {
  const eventTime = align8(MAGIC.length + 4 + headerBytes);
  const known = eventTime + rows * 8;
  const used = known + rows * 8;
  const slab = align8(used + rows * 4);
  return { eventTime, known, used, slab, total: slab + rows * slot };
}

/**
 * A segment's file read as `read` asks (SegmentRead; {}: whole, into a buffer of its
 * own), or undefined when it is missing or not whole; `issued` is called once the read
 * of its rows is with the thread pool. A narrow window is read in pieces: the header and the event times,
 * then of each key only the run of rows the window keeps (a batch-inference partition
 * of a third of the month reads about a third of the file).
 */
async function readSegmentFile(file: string, read: SegmentRead, issued?: () => void): Promise<Segment | undefined> {
  return readingFile(file, async (handle, size) => {
    const head = await readAt(handle, Buffer.alloc(MAGIC.length + 4), 0);
    if (!head || !head.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
    const headerBytes = head.readUInt32LE(MAGIC.length);
    const window = read.window;
    if (window && (window.from !== undefined || window.to !== undefined) && headerBytes < size) {
      const headerText = await readAt(handle, Buffer.alloc(headerBytes), MAGIC.length + 4);
      const header = headerText ? parseHeader(headerText) : undefined;
      if (!header) return undefined;
      const layout = sections(headerBytes, header.rows, header.slot);
      if (size !== layout.total) return undefined;
      const times = new Float64Array(room(read.scratch, header.rows * 8).buffer, 0, header.rows);
      if (!(await readAt(handle, Buffer.from(times.buffer, 0, header.rows * 8), layout.eventTime))) return undefined;
      const runs = header.keys.map(([key, from, to]) => {
        const lo = window.from === undefined ? from : lowerBound(times, from, to, window.from);
        return [key, lo, window.to === undefined ? to : lowerBound(times, lo, to, window.to)] as const;
      });
      const kept = runs.reduce((n, [, lo, hi]) => n + hi - lo, 0);
      if (kept <= header.rows * WINDOW_READ_BELOW) {
        const segment = readRuns(handle, header.slot, layout, times, runs, kept, read.scratch);
        issued?.();
        return await segment;
      }
    }
    // Whole, into the caller's buffer when there is one (its own ArrayBuffer: 8-aligned).
    const whole = readAt(handle, read.scratch ? room(read.scratch, size).subarray(0, size) : Buffer.allocUnsafeSlow(size), 0);
    issued?.();
    const bytes = await whole;
    return bytes ? parseSegment(bytes) : undefined;
  });
}

/**
 * `read` of the file opened for reading (and its size), closed after; undefined when it
 * cannot be opened. A file `read` made something of is marked used now (its change
 * time: the eviction's order, least recently used out first).
 */
export async function readingFile<T>(file: string, read: (handle: fs.FileHandle, size: number) => Promise<T | undefined>): Promise<T | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const found = await read(handle, (await handle.stat()).size);
    if (found !== undefined) {
      const now = new Date();
      await handle.utimes(now, now).catch(() => undefined);
    }
    return found;
  } finally {
    await handle.close();
  }
}

/** Fills `buf` from the file at `position`; undefined when the file ends first. */
export async function readAt(handle: fs.FileHandle, buf: Buffer, position: number): Promise<Buffer | undefined> {
  for (let done = 0; done < buf.length; ) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) return undefined;
    done += bytesRead;
  }
  return buf;
}

/** The rows `runs` keep ([key, from, to) of the file's rows), read from their places: a segment of those rows only. */
async function readRuns(
  handle: fs.FileHandle,
  slot: number,
  layout: ReturnType<typeof sections>,
  times: Float64Array,
  runs: ReadonlyArray<readonly [string, number, number]>,
  rows: number,
  scratch: SegmentRead['scratch'],
): Promise<Segment | undefined> {
  // In the scratch buffer after the file's event times (`times`, at its start) when there is one.
  const first = align8(times.byteLength);
  const [eventTime, known, used, slab] = [first, first + rows * 8, first + rows * 16, align8(first + rows * 20)];
  const buf = scratch ? room(scratch, slab + rows * slot, times.byteLength) : Buffer.allocUnsafeSlow(slab + rows * slot);
  // room() may have moved the times into a bigger buffer.
  const fileTimes = scratch ? new Float64Array(buf.buffer, 0, times.length) : times;
  const segment: Segment = {
    rows,
    slot,
    keys: new Map(),
    eventTime: new Float64Array(buf.buffer, eventTime, rows),
    known: new Float64Array(buf.buffer, known, rows),
    used: new Int32Array(buf.buffer, used, rows),
    slab: buf.subarray(slab, slab + rows * slot),
    bytes: 0,
  };
  const knownBytes = Buffer.from(buf.buffer, known, rows * 8);
  const usedBytes = Buffer.from(buf.buffer, used, rows * 4);
  const reads: Array<Promise<Buffer | undefined>> = [];
  let at = 0;
  for (const [key, lo, hi] of runs) {
    if (hi <= lo) continue;
    const n = hi - lo;
    segment.keys.set(key, [at, at + n]);
    segment.eventTime.set(fileTimes.subarray(lo, hi), at);
    reads.push(
      readAt(handle, knownBytes.subarray(at * 8, (at + n) * 8), layout.known + lo * 8),
      readAt(handle, usedBytes.subarray(at * 4, (at + n) * 4), layout.used + lo * 4),
      readAt(handle, segment.slab.subarray(at * slot, (at + n) * slot), layout.slab + lo * slot),
    );
    at += n;
  }
  segment.bytes = rows * (20 + slot);
  return (await Promise.all(reads)).every((b) => b !== undefined) ? segment : undefined;
}

interface SegmentHeader {
  rows: number;
  slot: number;
  /** Per key, its text and its rows [from, to). */
  keys: Array<[string, number, number]>;
}

function parseHeader(text: Buffer): SegmentHeader | undefined {
  try {
    return JSON.parse(text.toString('utf8')) as SegmentHeader;
  } catch {
    return undefined;
  }
}

function parseSegment(file: Buffer): Segment | undefined {
  // Typed arrays over the file need its bytes 8-aligned.
  const bytes = file.byteOffset % 8 === 0 ? file : Buffer.from(file);
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const headerBytes = bytes.readUInt32LE(MAGIC.length);
  const header = parseHeader(bytes.subarray(MAGIC.length + 4, MAGIC.length + 4 + headerBytes));
  if (!header) return undefined;
  const { rows, slot } = header;
  const layout = sections(headerBytes, rows, slot);
  if (bytes.length !== layout.total) return undefined;
  const at = (offset: number) => bytes.byteOffset + offset;
  return {
    rows,
    slot,
    keys: new Map(header.keys.map(([k, from, to]) => [k, [from, to] as const])),
    eventTime: new Float64Array(bytes.buffer, at(layout.eventTime), rows),
    known: new Float64Array(bytes.buffer, at(layout.known), rows),
    used: new Int32Array(bytes.buffer, at(layout.used), rows),
    slab: bytes.subarray(layout.slab, layout.total),
    bytes: bytes.length,
  };
}
