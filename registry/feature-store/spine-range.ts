/**
 * How many labelled rows a spine has in a snapshot, and the event times of its first
 * and last: what a training dataset's window is when none is given (datasets.ts).
 *
 * Why it is kept: Postgres finds them by a scan of every spine row, 0.45 s of a 3M-row
 * build (whose spine and joined groups are otherwise read from segments), before the
 * build can start. So each of the spine group's range partitions keeps its figures in
 * a small file beside its segments (segments.ts), named as a segment is: by the last
 * commit that wrote to the partition's range, and the label column counted. A build
 * reads the files and asks Postgres only for the partitions without one (a first
 * build; a partition a commit wrote to since).
 *
 * Why it is exact: a partition's figures change only with a commit that writes to its
 * range, and that commit gives it another name; the files are written whole or not at
 * all (SegmentCache.save). Times are microseconds since 1970, as Postgres keeps them.
 */
import type { Knex } from 'knex';
import { id, raw, sql } from '../db/index.ts';
import { pointInTimeSql, type PitQuery } from './point-in-time.ts';
import { readingFile, segmentCache, type PartitionSegment, type SegmentCache } from './segments.ts';

/** A spine's labelled rows: how many, and the first and last event times (microseconds since 1970; null without rows). */
export interface SpineRange {
  rows: number;
  first: number | null;
  last: number | null;
}

const FORMAT = 'FTISPR01';

/**
 * The range of the labelled rows of q's spine (q.label), in q's snapshot and q's window
 * if it has one; from the files of its partitions where it can (see above).
 */
export async function labelledSpineRange(knex: Knex, q: PitQuery): Promise<SpineRange> {
  if (q.label === undefined) throw new Error('a labelled spine range needs the spine label');
  const cache = q.spine.rows ? undefined : segmentCache();
  const parts = cache && (await cache.planOf(knex, { group: q.spine.shape, pin: q.spine.visible }, { format: FORMAT, label: q.label }, q.start, q.end));
  if (!cache || !parts) return rangeFromPostgres(knex, q);
  const ranges = await Promise.all(parts.map((p) => partitionRange(knex, q, cache, p)));
  return ranges.reduce(union, { rows: 0, first: null, last: null });
}

/** Partition `p`'s labelled rows (of q's window): from its file, else from Postgres and then saved. */
async function partitionRange(knex: Knex, q: PitQuery, cache: SegmentCache, p: PartitionSegment): Promise<SpineRange> {
  // No commit of the snapshot wrote to the partition's range: it has no rows in it.
  if (!p.name) return { rows: 0, first: null, last: null };
  const whole = (q.start === undefined || q.start <= p.start) && (q.end === undefined || q.end >= p.end);
  const start = q.start && q.start > p.start ? q.start : p.start;
  const end = q.end && q.end < p.end ? q.end : p.end;
  if (!whole) return rangeFromPostgres(knex, { ...q, start, end });
  const kept = await readingFile(cache.fileOf(p.name), async (handle) => parseRange(await handle.readFile()));
  if (kept) return kept;
  const range = await rangeFromPostgres(knex, { ...q, start, end });
  void cache.save(p.name, Buffer.from(JSON.stringify({ format: FORMAT, ...range })));
  return range;
}

/** The range by a scan of q's labelled spine rows in Postgres. */
async function rangeFromPostgres(knex: Knex, q: PitQuery): Promise<SpineRange> {
  const et = id(q.spine.shape.eventTime);
  // Microseconds as bigint: a Date would drop the last three digits.
  const result = (await raw(
    knex,
    sql`select count(*)::bigint as rows, (extract(epoch from min(${et})) * 1000000)::bigint as first, (extract(epoch from max(${et})) * 1000000)::bigint as last
        from (${pointInTimeSql({ ...q, joins: [], strategy: 'lateral' })}) s`,
  )) as { rows: Array<{ rows: number | string; first: number | string | null; last: number | string | null }> };
  const row = result.rows[0];
  const micros = (v: number | string | null | undefined) => (v === null || v === undefined ? null : Number(v));
  return { rows: Number(row?.rows ?? 0), first: micros(row?.first), last: micros(row?.last) };
}

function parseRange(bytes: Buffer): SpineRange | undefined {
  try {
    const r = JSON.parse(bytes.toString('utf8')) as Partial<SpineRange> & { format?: string };
    const time = (v: unknown) => v === null || Number.isSafeInteger(v);
    if (r.format !== FORMAT || !Number.isSafeInteger(r.rows) || !time(r.first) || !time(r.last)) return undefined;
    return { rows: r.rows as number, first: r.first as number | null, last: r.last as number | null };
  } catch {
    return undefined;
  }
}

function union(a: SpineRange, b: SpineRange): SpineRange {
  const pick = (x: number | null, y: number | null, f: (x: number, y: number) => number) => (x === null ? y : y === null ? x : f(x, y));
  return { rows: a.rows + b.rows, first: pick(a.first, b.first, Math.min), last: pick(a.last, b.last, Math.max) };
}
