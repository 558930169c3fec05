/**
 * The point-in-time join: for each spine row at t, the latest row of each joined
 * group with an event time strictly before t and known (`_available_at`) at or before
 * t, no older than the join's ttl. `pointInTime: 'event_time'` drops the "known"
 * condition (corrected history). Used for training datasets
 * and batch inference; reads every group in a snapshot (the commits visible when a
 * pinned commit became visible: consistent and reproducible, whatever order their
 * ids were given in).
 *
 * Two plans, same result:
 *  - window: set-based, one sort per joined group. Spine rows and the group's rows
 *    are merged into one stream partitioned by the join key and ordered by time,
 *    spine rows first at equal times. Each feature row carries its values in an
 *    array that starts with its event time; a running max() of those arrays is
 *    therefore the newest feature row seen so far, which is what each spine row
 *    takes. No join back, no row numbers. Fast for big spines. A window that starts
 *    late in a group's history does not read all of it: each commit records how long
 *    its rows took to become known (max_known_lag_ms), so rows with an event time
 *    before start − that lag ("settled") were all known before the first spine row,
 *    and of those only each key's newest one can be taken: it joins the stream by an
 *    index probe per key instead of the whole history being scanned and sorted.
 *  - lateral: for each spine row, an index probe for the newest earlier row (one per
 *    branch of the snapshot, newest of the two). Fast for small spines.
 *
 * A third plan, for training datasets, runs the same join outside SQL from the
 * relations built here (spineStreamSql, joinedStreamSql): pit-stream.ts.
 */
import { PG_TYPE } from '../../features/schema.ts';
import { col, id, ids, int, join, kw, sql, type Sql } from '../db/index.ts';
import type { SnapshotPin } from './commits.ts';
import { snapshotFilter, snapshotSql } from './reads.ts';
import { groupTables, type GroupShape } from './tables.ts';

export interface PitFeature {
  column: string;
  as: string;
}

export interface PitJoin {
  shape: GroupShape;
  /** The snapshot the group is read in. */
  visible: SnapshotPin;
  /** Joined group's entity key -> spine column. */
  on: Record<string, string>;
  features: PitFeature[];
  /** Rows with an event time before t − ttl join as null. */
  ttlMs?: number;
}

/** 'available_at': a row joins once it is known; 'event_time': as soon as it happened (corrected history). */
export type PointInTimePolicy = 'available_at' | 'event_time';

/** 'window': one set-based pass (large spines); 'lateral': an index probe per spine row (small ones). */
export type PitStrategy = 'window' | 'lateral';
/**
 * How a reader runs the join: one of the SQL plans, or 'stream' (pit-stream.ts): the
 * spine and each joined group read once, unsorted, and joined in Node.
 */
export type PitPlan = PitStrategy | 'stream';

export interface PitQuery {
  spine: {
    shape: GroupShape;
    visible: SnapshotPin;
    /**
     * Spine rows given as a relation instead of the group's snapshot (Feast's entity
     * dataframe; entity-rows.ts builds it): the group's columns, its event-time column
     * holding each row's time, plus `carry`.
     */
    rows?: Sql;
    /** Extra spine columns passed through to the output (after the label), with their Postgres types. */
    carry?: Array<{ name: string; pgType: string }>;
  };
  /** Spine label column: included, and spine rows without a label are left out. */
  label?: string;
  spineFeatures: PitFeature[];
  joins: PitJoin[];
  start?: Date;
  end?: Date;
  strategy: PitStrategy;
  pointInTime: PointInTimePolicy;
  /**
   * One of `count` chunks, cut by a hash of the first join's key: the spine rows whose
   * key hashes to `index`, and only the first joined group's rows that can match them.
   * Chunks are independent queries (run them side by side); together they give every row once.
   * Several indices: those chunks' rows at once (the stream plan reads a group once for them).
   */
  chunk?: { index: number | number[]; count: number };
}

/**
 * Which chunk a key falls in: the same expression over the spine's columns and over the
 * joined group's. A null key (a spine row that joins nothing: its features are null)
 * falls in chunk 0, so that every spine row is in one chunk: its hash is null.
 */
function chunkOf(columns: Sql[], count: number): Sql {
  return sql`coalesce((hashtext(${join(columns.map((c) => sql`(${c})::text`), ` || '|' || `)}) & 2147483647) % ${int(count)}, 0)`;
}

/** The spine's columns a chunk is cut by: those the first join's keys are matched on. */
function spineChunkColumns(first: PitJoin, alias: string): Sql[] {
  return first.shape.entityKeys.map((k) => col(alias, first.on[k] as string));
}

/** The chunk condition on the spine (alias) or, for the first join, on its group's rows (alias); undefined without chunks. */
function chunkFilter(q: PitQuery, alias: string, side: 'spine' | 'join'): Sql | undefined {
  const first = q.joins[0];
  // One chunk is all of it: no condition.
  if (!q.chunk || !first || q.chunk.count <= 1) return undefined;
  const columns = side === 'spine' ? spineChunkColumns(first, alias) : first.shape.entityKeys.map((k) => col(alias, k));
  const { index, count } = q.chunk;
  if (typeof index === 'number') return sql`${chunkOf(columns, count)} = ${int(index)}`;
  // All the chunks: no condition.
  if (new Set(index).size >= count) return undefined;
  return sql`${chunkOf(columns, count)} in (${join(index.map(int), ', ')})`;
}

/**
 * Spine rows per chunk, for `count` chunks (rows `chunk`, `n`; chunks without rows left
 * out): what each chunk of a stream-plan build will hold. Undefined for a query without
 * joins, which is not cut by key.
 */
export function chunkSizesSql(q: PitQuery, count: number): Sql | undefined {
  const first = q.joins[0];
  if (!first) return undefined;
  const { chunk: _chunk, ...whole } = q;
  return sql`select ${chunkOf(spineChunkColumns(first, 's'), count)} as chunk, count(*)::bigint as n from (${spineRows(q)}) s where ${spineFilter(whole, 's')} group by 1`;
}

/** The spine rows: the given relation, or the spine group's rows in its snapshot. */
function spineRows(q: PitQuery): Sql {
  return q.spine.rows ?? snapshotSql(q.spine.shape, q.spine.visible);
}

/** Columns: spine keys, spine event time, the label (if any), carried columns, then every feature alias. */
export function pointInTimeSql(q: PitQuery): Sql {
  return q.strategy === 'window' ? windowPlan(q) : lateralPlan(q);
}

function spineFilter(q: PitQuery, alias: string): Sql {
  const et = q.spine.shape.eventTime;
  const parts: Sql[] = [sql`true`];
  if (q.start) parts.push(sql`${col(alias, et)} >= ${q.start}`);
  if (q.end) parts.push(sql`${col(alias, et)} < ${q.end}`);
  if (q.label) parts.push(sql`${col(alias, q.label)} is not null`);
  const chunk = chunkFilter(q, alias, 'spine');
  if (chunk) parts.push(chunk);
  return join(parts, ' and ');
}

/** The spine's output columns, in order, with their Postgres types. */
function spineOutputs(q: PitQuery): Array<{ source: string; as: string; pgType: string }> {
  const shape = q.spine.shape;
  const typeOf = (c: string) => PG_TYPE[shape.columns.find((x) => x.name === c)?.type ?? 'string'];
  const out = [...shape.entityKeys, shape.eventTime, ...(q.label ? [q.label] : [])].map((c) => ({ source: c, as: c, pgType: typeOf(c) }));
  for (const c of q.spine.carry ?? []) out.push({ source: c.name, as: c.name, pgType: c.pgType });
  for (const f of q.spineFeatures) out.push({ source: f.column, as: f.as, pgType: typeOf(f.column) });
  return out;
}

function windowPlan(q: PitQuery): Sql {
  const spine = spineOutputs(q);
  const et = q.spine.shape.eventTime;
  // Join key columns the stages need from the spine rows.
  const joinKeys = q.joins.flatMap((j, ji) => j.shape.entityKeys.map((k, ki) => ({ name: `_j${ji}_k${ki}`, spineColumn: j.on[k] as string })));
  let carried = [...spine.map((c) => ({ name: c.as, pgType: c.pgType })), ...joinKeys.map((k) => ({ name: k.name, pgType: 'text' }))];
  let current: Sql = sql`select ${join(
    [...spine.map((c) => sql`${col('s', c.source)} as ${id(c.as)}`), ...joinKeys.map((k) => sql`${col('s', k.spineColumn)}::text as ${id(k.name)}`)],
    ', ',
  )} from (${spineRows(q)}) s where ${spineFilter(q, 's')}`;

  q.joins.forEach((j, ji) => {
    const keys = j.shape.entityKeys;
    const typeOf = (c: string) => j.shape.columns.find((x) => x.name === c)?.type ?? 'string';
    const numeric = j.features.every((f) => ['float', 'int', 'bool'].includes(typeOf(f.column)));
    // The carried array: event time first (it orders the running max), then the values.
    const element = (value: Sql, type: string): Sql =>
      numeric ? (type === 'bool' ? sql`(${value})::int::double precision` : sql`(${value})::double precision`) : sql`(${value})::text`;
    const first = numeric ? sql`extract(epoch from r._te)::double precision` : sql`to_char(r._te at time zone 'UTC', 'YYYYMMDDHH24MISSUS')`;
    const values = sql`array[${join([first, ...j.features.map((f, fi) => element(sql`r.${id(`_f${fi}`)}`, typeOf(f.column)))], ', ')}]`;
    const arrayType = numeric ? kw('double precision[]') : kw('text[]');
    const keyAliases = keys.map((_, ki) => `_j${ji}_k${ki}`);
    // UNION ALL matches columns by position: the feature rows list the carried
    // columns in the same order, as nulls except for this join's key.
    const featureRowColumns = carried.map((c) => {
      const ki = keyAliases.indexOf(c.name);
      return ki >= 0 ? sql`r.${id(`_k${ki}`)} as ${id(c.name)}` : sql`null::${kw(c.pgType)} as ${id(c.name)}`;
    });
    const ordered = sql`
      select ${ids(carried.map((c) => c.name))}, ${id(et)} as _t, 0 as _kind, null::${arrayType} as _v from (${current}) spine_rows
      union all
      select ${join(featureRowColumns, ', ')}, greatest(r._te, r._known) as _t, case when r._known > r._te then -1 else 1 end as _kind, ${values} as _v
      from (${joinedRowsSql(q, ji)}) r`;
    // The newest row that entered is the latest known one; the ttl drops it when too old.
    const fresh =
      j.ttlMs === undefined
        ? undefined
        : numeric
          ? sql`(_latest[1]) >= extract(epoch from ${id(et)})::double precision - ${j.ttlMs / 1000}`
          : sql`(_latest[1]) >= to_char((${id(et)} - ${j.ttlMs} * interval '1 millisecond') at time zone 'UTC', 'YYYYMMDDHH24MISSUS')`;
    const unpack = j.features.map((f, fi) => {
      const t = typeOf(f.column);
      const v = sql`(_latest[${fi + 2}])`;
      const typed = t === 'bool' ? sql`(${v})::int::boolean` : sql`(${v})::${kw(PG_TYPE[t])}`;
      return fresh ? sql`case when ${fresh} then ${typed} end as ${id(f.as)}` : sql`${typed} as ${id(f.as)}`;
    });
    current = sql`select ${ids(carried.map((c) => c.name))}, ${join(unpack, ', ')} from (
        select *, max(_v) over (partition by ${ids(keyAliases)} order by _t, _kind rows unbounded preceding) as _latest from (${ordered}) o
      ) w where _kind = 0`;
    carried = [...carried, ...j.features.map((f) => ({ name: f.as, pgType: PG_TYPE[typeOf(f.column)] }))];
  });
  const outputs = [...spine.map((c) => c.as), ...q.joins.flatMap((j) => j.features.map((f) => f.as))];
  return sql`select ${ids(outputs)} from (${current}) pit`;
}

/**
 * The rows of join `ji`'s group that the running max reads, in no order (the window
 * and stream plans both read them): its entity keys as text (`_k0`…), event time
 * (`_te`), when it became known (`_known`: its available-at time, or its event time
 * under the 'event_time' policy) and its features (`_f0`…). Rows that can join no
 * spine row of the query are left out: those at or after its end, those older than
 * the ttl before its start, those of other chunks, and those settled before its start
 * but the newest of each key (seeds, by an index probe per key).
 *
 * A row enters the running max when it is known: at `_known` when that is after its
 * event time (before spine rows at that instant: known at or before t), else at its
 * event time (after spine rows at that instant: strictly before t).
 *
 * With `slice`, only the rows of its event times (the seeds, all older than the query's
 * start, only in a slice without a `from`): reads of one group side by side.
 *
 * The seeds are probed for each key the spine has. With `spineKeys` (the texts of its
 * distinct keys, known to a caller that has read the spine: the stream plan) a join on
 * one key column probes those; else the keys are found by scanning the spine again.
 */
export function joinedRowsSql(q: PitQuery, ji: number, { slice, spineKeys }: { slice?: TimeSlice; spineKeys?: readonly string[] } = {}): Sql {
  const j = q.joins[ji] as PitJoin;
  const keys = j.shape.entityKeys;
  const te = sql`g.${id(j.shape.eventTime)}`;
  const known = q.pointInTime === 'available_at';
  const bounds: Sql[] = q.end ? [sql`${te} < ${q.end}`, ...(known ? [sql`g._available_at < ${q.end}`] : [])] : [];
  const from = joinedRowsFrom(q, ji);
  if (from.ttl) bounds.push(sql`${te} >= ${from.ttl}`);
  const chunk = ji === 0 ? chunkFilter(q, 'g', 'join') : undefined;
  if (chunk) bounds.push(chunk);
  if (from.settled) bounds.push(sql`${te} >= ${from.settled}`);
  if (slice) {
    if (slice.from) bounds.push(sql`${te} >= ${slice.from}`);
    if (slice.to) bounds.push(sql`${te} < ${slice.to}`);
  }
  const timeBound = bounds.length ? sql`where ${join(bounds, ' and ')}` : sql``;
  const features = j.features.map((f, fi) => sql`g.${id(f.column)} as ${id(`_f${fi}`)}`);
  const rows = sql`select ${join([...keys.map((k, ki) => sql`g.${id(k)}::text as ${id(`_k${ki}`)}`), sql`${te} as _te`, sql`${known ? sql`g._available_at` : te} as _known`, ...features], ', ')}
      from (${snapshotSql(j.shape, j.visible)}) g ${timeBound}`;
  if (!from.settled || (slice && slice.from)) return rows;
  return sql`${rows}
      union all
      ${seedRowsSql(q, ji, from.settled, spineKeys)}`;
}

/**
 * Where join `ji`'s rows that joinedRowsSql scans begin: `ttl`, the ttl before the
 * query's start (an older row joins nowhere); `settled`, the instant before which
 * every row was known by the start (settledBefore): of those only each key's newest
 * can matter (the seeds), so they are not scanned. Both undefined without a start.
 */
export function joinedRowsFrom(q: PitQuery, ji: number): { ttl?: Date; settled?: Date } {
  const j = q.joins[ji] as PitJoin;
  if (!q.start) return {};
  const ttl = j.ttlMs === undefined ? undefined : new Date(q.start.getTime() - j.ttlMs);
  const settled = settledBefore(j, q.start, q.pointInTime);
  return { ...(ttl ? { ttl } : {}), ...(settled ? { settled } : {}) };
}

/**
 * Each spine key's newest row of join `ji`'s group before `settled`, by an index probe
 * (known by then, so it enters before every spine row): joinedRowsSql's columns.
 */
function seedRowsSql(q: PitQuery, ji: number, settled: Date, spineKeys: readonly string[] | undefined): Sql {
  const j = q.joins[ji] as PitJoin;
  const keys = j.shape.entityKeys;
  const te = sql`g.${id(j.shape.eventTime)}`;
  const features = j.features.map((f, fi) => sql`g.${id(f.column)} as ${id(`_f${fi}`)}`);
  const keyColumn = keys.length === 1 ? j.shape.columns.find((c) => c.name === keys[0]) : undefined;
  const probes =
    spineKeys && keyColumn
      ? sql`select (u.k)::${kw(PG_TYPE[keyColumn.type])} as ${id(j.on[keyColumn.name] as string)}, ${settled}::timestamptz as _settled
            from jsonb_array_elements_text(${JSON.stringify(spineKeys)}::jsonb) u(k)`
      : sql`select distinct ${ids(keys.map((k) => j.on[k] as string))}, ${settled}::timestamptz as _settled from (${spineRows(q)}) s where ${spineFilter(q, 's')}`;
  return sql`select ${join([...keys.map((k, ki) => sql`${col('k', j.on[k] as string)}::text as ${id(`_k${ki}`)}`), sql`${te} as _te`, sql`${te} as _known`, ...features], ', ')}
      from (${probes}) k
      cross join lateral (${latestBefore({ ...j, ttlMs: undefined }, 'k', '_settled', 'event_time', q.start)}) g`;
}

/**
 * The seeds of join `ji` (seedRowsSql) as the stream plan reads its group's rows
 * (joinedStreamSql's columns), for a reader that takes the rest of the rows from
 * column segments (segments.ts); undefined when the query has no seeds.
 */
export function joinedSeedsStreamSql(q: PitQuery, ji: number, spineKeys?: readonly string[]): Sql | undefined {
  const settled = joinedRowsFrom(q, ji).settled;
  if (!settled) return undefined;
  const j = q.joins[ji] as PitJoin;
  const key = keyText(j.shape.entityKeys.map((_, ki) => col('r', `_k${ki}`)));
  return sql`select ${join([sql`${key} as _key`, sql`r._te`, sql`r._known`, ...j.features.map((_, fi) => col('r', `_f${fi}`))], ', ')} from (${seedRowsSql(q, ji, settled, spineKeys)}) r`;
}

/** One text per key (of one column or several): the same on the spine's side and the group's. */
export function keyText(columns: Sql[]): Sql {
  const texts = columns.map((c) => sql`(${c})::text`);
  return texts.length === 1 ? (texts[0] as Sql) : sql`array[${join(texts, ', ')}]::text`;
}

/**
 * The column of spineStreamSql's inner rows (with `withChunk`) that holds each row's
 * chunk of `q.chunk.count` as a smallint (chunkOf): `extra` may name it, to route a
 * read of several chunks.
 */
export const SPINE_CHUNK_COLUMN = '_pit_chunk';

/**
 * The stream plan's spine (pit-stream.ts): the output columns of the spine, then
 * `extra` (expressions over those columns), then the text of each join's key that no
 * output column already is (`_jk0`…), in no order (the stream plan sorts). Where the
 * reader finds each key and the row's time: spineStreamFields.
 */
export function spineStreamSql(q: PitQuery, extra: Sql[], options: { withChunk?: boolean } = {}): Sql {
  const chunk: Sql[] = [];
  if (options.withChunk) {
    const first = q.joins[0];
    if (!first || !q.chunk) throw new Error("a spine read with its rows' chunks needs a join and a chunk count");
    chunk.push(sql`(${chunkOf(spineChunkColumns(first, 's'), q.chunk.count)})::smallint as ${id(SPINE_CHUNK_COLUMN)}`);
  }
  return spineSelect(q, extra, chunk, spineFilter(q, 's'));
}

/**
 * A spine segment's rows (spine-segments.ts): those of the spine's snapshot with an
 * event time in [from, to), labelled or not and of every chunk, as spineStreamSql
 * sends them without extra columns: a segment serves any window, label and chunking.
 */
export function spineSegmentSql(q: PitQuery, from: Date, to: Date): Sql {
  const et = q.spine.shape.eventTime;
  return spineSelect(q, [], [], sql`${col('s', et)} >= ${from} and ${col('s', et)} < ${to}`);
}

/** The spine's output columns, then `extra`, then the joins' own key columns (spineStreamFields), of the spine rows `where` keeps. */
function spineSelect(q: PitQuery, extra: Sql[], chunk: Sql[], where: Sql): Sql {
  const spine = spineOutputs(q);
  const own = q.joins.flatMap((j, ji) => (keyOutput(spine, j) < 0 ? [{ j, ji }] : []));
  const keys = own.map(({ j, ji }) => sql`${keyText(j.shape.entityKeys.map((k) => col('s', j.on[k] as string)))} as ${id(`_jk${ji}`)}`);
  const inner = sql`select ${join([...spine.map((c) => sql`${col('s', c.source)} as ${id(c.as)}`), ...keys, ...chunk], ', ')}
                    from (${spineRows(q)}) s where ${where}`;
  const columns = [ids(spine.map((c) => c.as)), ...extra, ...own.map(({ ji }) => id(`_jk${ji}`))];
  return sql`select ${join(columns, ', ')} from (${inner}) o`;
}

/**
 * How a spine row's chunk is computed in Node (spine-segments.ts), the same as chunkOf
 * over the spine: the spine output columns (by index) whose text the hash reads, each
 * text or bigint; undefined when a chunk's columns are not all such outputs.
 */
export function spineChunkOutputs(q: PitQuery): Array<{ field: number; pgType: 'text' | 'bigint' }> | undefined {
  const first = q.joins[0];
  if (!first) return undefined;
  const spine = spineOutputs(q);
  const fields = first.shape.entityKeys.map((k) => {
    const at = spine.findIndex((c) => c.source === first.on[k]);
    const pgType = spine[at]?.pgType;
    return at >= 0 && (pgType === 'text' || pgType === 'bigint') ? { field: at, pgType } : undefined;
  });
  return fields.every((f) => f !== undefined) ? (fields as Array<{ field: number; pgType: 'text' | 'bigint' }>) : undefined;
}

/**
 * The fields of spineStreamSql's rows (with `extra` extra columns) that hold each join's
 * key text and the spine row's time. The time is the event time's own output column. A
 * key that is an output (keyOutput) is read there; any other key comes in a column of
 * its own after the extra ones, in the joins' order. Sending a column twice cost
 * Postgres about a tenth of the spine's COPY.
 */
export function spineStreamFields(q: PitQuery, extra: number): { keys: number[]; time: number } {
  const spine = spineOutputs(q);
  let next = spine.length + extra;
  const keys = q.joins.map((j) => {
    const output = keyOutput(spine, j);
    return output >= 0 ? output : next++;
  });
  return { keys, time: spine.findIndex((c) => c.source === q.spine.shape.eventTime) };
}

/** The spine output that is join `j`'s key text as it is (one text column: a text's binary form is its text), or -1. */
function keyOutput(spine: ReturnType<typeof spineOutputs>, j: PitJoin): number {
  const [key, ...more] = j.shape.entityKeys;
  return more.length === 0 ? spine.findIndex((c) => c.source === j.on[key as string] && c.pgType === 'text') : -1;
}

/** Rows of a joined group by event time: from `from` (else the earliest) to before `to` (else the latest). */
interface TimeSlice {
  from?: Date;
  to?: Date;
}

/**
 * The stream plan's rows of join `ji`'s group: its key's text (`_key`), `_te`, `_known`
 * and the features, in no order; with `part`, part `part.index` of `part.count` (reads
 * of one group side by side). A query with a start and an end is cut by event time,
 * into equal spans of [start, end) (the first part also takes the rows before start,
 * the seeds among them), so that each read scans only its own range partitions; one
 * without is cut by a hash of the key, and each read scans every row. `spineKeys`: see
 * joinedRowsSql.
 */
export function joinedStreamSql(q: PitQuery, ji: number, part?: { index: number; count: number }, spineKeys?: readonly string[]): Sql {
  const j = q.joins[ji] as PitJoin;
  const key = keyText(j.shape.entityKeys.map((_, ki) => col('r', `_k${ki}`)));
  const columns = join([sql`${key} as _key`, sql`r._te`, sql`r._known`, ...j.features.map((_, fi) => col('r', `_f${fi}`))], ', ');
  if (!part || part.count <= 1) return sql`select ${columns} from (${joinedRowsSql(q, ji, { spineKeys })}) r`;
  if (q.start && q.end) {
    const start = q.start.getTime();
    const span = q.end.getTime() - start;
    const at = (i: number) => new Date(start + Math.floor((span * i) / part.count));
    const slice = { from: part.index > 0 ? at(part.index) : undefined, to: part.index < part.count - 1 ? at(part.index + 1) : undefined };
    return sql`select ${columns} from (${joinedRowsSql(q, ji, { slice, spineKeys })}) r`;
  }
  return sql`select ${columns} from (${joinedRowsSql(q, ji, { spineKeys })}) r where ${chunkOf(j.shape.entityKeys.map((_, ki) => col('r', `_k${ki}`)), part.count)} = ${int(part.index)}`;
}

/** The output columns of a point-in-time query, in order, with their Postgres types. */
export function pointInTimeColumns(q: PitQuery): Array<{ name: string; pgType: string }> {
  const joined = q.joins.flatMap((j) => j.features.map((f) => ({ name: f.as, pgType: PG_TYPE[j.shape.columns.find((x) => x.name === f.column)?.type ?? 'string'] })));
  return [...spineOutputs(q).map((c) => ({ name: c.as, pgType: c.pgType })), ...joined];
}

/**
 * The instant before which every row of the joined group's snapshot was known by
 * `start`: start minus the longest any of its commits' rows took to become known
 * (SnapshotPin.maxKnownLagMs; start itself under 'event_time'). Undefined when a
 * commit predates that record: then nothing is bounded.
 */
function settledBefore(j: PitJoin, start: Date, policy: PointInTimePolicy): Date | undefined {
  if (policy === 'event_time') return start;
  const lag = j.visible.maxKnownLagMs;
  return lag === null ? undefined : new Date(start.getTime() - lag);
}

/** The newest row of a group before the spine row (and known by then): one index probe per snapshot branch. */
function latestBefore(j: PitJoin, spineAlias: string, spineTime: string, policy: PointInTimePolicy, below?: Date): Sql {
  const t = groupTables(j.shape.name, j.shape.version);
  const columns = [...j.features.map((f) => f.column), j.shape.eventTime];
  const match = join(
    j.shape.entityKeys.map((k) => sql`${col('g', k)} = ${col(spineAlias, j.on[k] as string)}`),
    ' and ',
  );
  const conditions = [sql`${col('g', j.shape.eventTime)} < ${col(spineAlias, spineTime)}`];
  if (policy === 'available_at') conditions.push(sql`g._available_at <= ${col(spineAlias, spineTime)}`);
  if (j.ttlMs !== undefined) conditions.push(sql`${col('g', j.shape.eventTime)} >= ${col(spineAlias, spineTime)} - ${j.ttlMs} * interval '1 millisecond'`);
  // A constant bound as well, when the caller knows one: it prunes partitions when the query is planned.
  if (below) conditions.push(sql`${col('g', j.shape.eventTime)} < ${below}`);
  const before = join(conditions, ' and ');
  const newest = sql`order by ${col('g', j.shape.eventTime)} desc limit 1`;
  const snapshot = snapshotFilter(j.visible, 'g');
  const offline = sql`(select ${ids(columns)} from ${id(t.offline)} g where ${match} and ${before} and ${snapshot.offline} ${newest})`;
  const history = sql`(select ${ids(columns)} from ${id(t.history)} g where ${match} and ${before} and ${snapshot.history} ${newest})`;
  return sql`select * from (${offline} union all ${history}) candidates order by ${id(j.shape.eventTime)} desc limit 1`;
}

function lateralPlan(q: PitQuery): Sql {
  const spine = spineOutputs(q);
  const laterals = q.joins.map((j, ji) => {
    const alias = `_f${ji}`;
    return {
      select: j.features.map((x) => sql`${col(alias, x.column)} as ${id(x.as)}`),
      from: sql`left join lateral (${latestBefore(j, 's', q.spine.shape.eventTime, q.pointInTime)}) ${id(alias)} on true`,
    };
  });
  return sql`select ${join([...spine.map((c) => sql`${col('s', c.source)} as ${id(c.as)}`), ...laterals.flatMap((l) => l.select)], ', ')}
             from (${spineRows(q)}) s ${join(laterals.map((l) => l.from), ' ')}
             where ${spineFilter(q, 's')}`;
}
