/**
 * The tables of one feature group version, and their DDL:
 *
 *   fg_<name>_v<version>            offline store, partitioned by RANGE (event time):
 *                                   one partition per month (the group's `partitionBy`)
 *   fg_<name>_v<version>__p<yyyymmdd> the partition of the range starting that day (UTC),
 *                                   unique on (entity keys, event time)
 *   fg_<name>_v<version>__c<commit> a commit's staging table while the pipeline writes;
 *                                   its rows move into their range partitions when it
 *                                   commits, and it is dropped
 *   fg_<name>_v<version>__hist      rows superseded by a later commit (time travel)
 *   fg_<name>_v<version>__online    latest row per entity (online-enabled groups); for
 *                                   windowed groups, each entity's current change point
 *                                   and the ones already known ahead (exits of its windows)
 *
 * Every offline row carries `_commit_id` (the commit that wrote it) and
 * `_row_number` (its row in the source), so any feature row traces to its input.
 */
import type { Knex } from 'knex';
import type { FeatureGroupDefinition, PartitionRange } from '../../features/definitions.ts';
import { PG_TYPE } from '../../features/schema.ts';
import { grantServingRead, id, ids, int, join, kw, raw, sql, transaction, type Sql } from '../db/index.ts';
import type { TimeSpan } from '../../features/sources/types.ts';

export interface GroupTables {
  offline: string;
  history: string;
  online: string;
  commit(commitId: number): string;
  /** The offline partition of the range that starts at `start` (a UTC midnight). */
  range(start: Date): string;
}

export function groupTables(name: string, version: number): GroupTables {
  const base = `fg_${name}_v${version}`;
  return {
    offline: base,
    history: `${base}__hist`,
    online: `${base}__online`,
    commit: (commitId) => `${base}__c${commitId}`,
    range: (start) => `${base}__p${dayStamp(start)}`,
  };
}

/** The stored shape of a group that the SQL needs (from a definition or the registry row). */
export interface GroupShape {
  name: string;
  version: number;
  entityKeys: string[];
  eventTime: string;
  columns: Array<{ name: string; type: keyof typeof PG_TYPE }>;
  online: boolean;
  /**
   * Rows are the change points of windowed aggregates: each holds the value from just
   * after its event time until the next row of its entity (see aggregates.ts).
   */
  windowed: boolean;
  /** The event-time range of one offline partition. */
  partitionBy: PartitionRange;
}

export function shapeOf(def: FeatureGroupDefinition): GroupShape {
  return { name: def.name, version: def.version, entityKeys: def.entityKeys, eventTime: def.eventTime, columns: def.columns, online: def.online, windowed: def.aggregation !== undefined, partitionBy: def.partitionBy };
}

export function featureColumns(shape: GroupShape): string[] {
  return shape.columns.map((c) => c.name);
}

/** Columns that are neither keys nor the event time. */
export function valueColumns(shape: GroupShape): string[] {
  return shape.columns.map((c) => c.name).filter((c) => !shape.entityKeys.includes(c) && c !== shape.eventTime);
}

function columnDefs(shape: GroupShape, extra: Sql[]): Sql {
  const defs = shape.columns.map((c) => sql`${id(c.name)} ${kw(PG_TYPE[c.type])}${shape.entityKeys.includes(c.name) || c.name === shape.eventTime ? kw(' not null') : kw('')}`);
  return join([...defs, ...extra], ', ');
}

/** The offline columns every row carries besides the features. */
export const OFFLINE_EXTRA_COLUMNS = ['_commit_id', '_row_number', '_available_at'] as const;

function createOffline(knex: Knex, shape: GroupShape, table: string): Knex.Raw {
  return raw(
    knex,
    sql`create table if not exists ${id(table)} (${columnDefs(shape, [kw('_commit_id bigint not null'), kw('_row_number bigint not null'), kw('_available_at timestamptz not null')])}) partition by range (${id(shape.eventTime)})`,
  );
}

/** Creates the group's tables if they do not exist (idempotent). */
export async function ensureGroupTables(knex: Knex, shape: GroupShape): Promise<void> {
  const t = groupTables(shape.name, shape.version);
  const keyAndTime = [...shape.entityKeys, shape.eventTime];
  await createOffline(knex, shape, t.offline);
  await raw(
    knex,
    sql`create table if not exists ${id(t.history)} (${columnDefs(shape, [kw('_commit_id bigint not null'), kw('_row_number bigint not null'), kw('_superseded_by bigint not null'), kw('_available_at timestamptz not null')])})`,
  );
  await ensureAvailableAt(knex, shape);
  await raw(knex, sql`create index if not exists ${id(`${t.history}_key`)} on ${id(t.history)} (${join(keyAndTime.map(id), ', ')})`);
  if (shape.online) {
    const primaryKey = onlineKey(shape);
    await raw(
      knex,
      sql`create table if not exists ${id(t.online)} (${columnDefs(shape, [kw('_commit_id bigint not null'), sql`primary key (${join(primaryKey.map(id), ', ')})`])})`,
    );  // The prediction server reads online tables (and nothing else the worker writes).
    await grantServingRead(knex, t.online);
  }
}

/** The online table's key: the entity, or for a windowed group the entity and the change point's time. */
export function onlineKey(shape: GroupShape): string[] {
  return shape.windowed ? [...shape.entityKeys, shape.eventTime] : shape.entityKeys;
}

/** Tables known to be up to date, per connection pool (and so per schema). */
const upgraded = new WeakMap<object, Set<string>>();

/** This pool's set of tables known to be up to date. */
function upgradedIn(knex: Knex): Set<string> {
  let seen = upgraded.get(knex.client);
  if (!seen) upgraded.set(knex.client, (seen = new Set<string>()));
  return seen;
}

/**
 * Brings tables made by an earlier version up to date: rows record when they became
 * known (ensureAvailableAt), and the offline table is partitioned by event time
 * (ensureRangeLayout). Called before a group is written or read; checks each table
 * once per process, a no-op for newer tables.
 */
export async function upgradeGroupTables(knex: Knex, shape: GroupShape): Promise<void> {
  await ensureAvailableAt(knex, shape);
  await ensureRangeLayout(knex, shape);
}

/** Tables made before rows recorded when they became known get the column, filled with their event time (what the joins assumed then). */
async function ensureAvailableAt(knex: Knex, shape: GroupShape): Promise<void> {
  const t = groupTables(shape.name, shape.version);
  const seen = upgradedIn(knex);
  for (const table of [t.offline, t.history]) {
    if (seen.has(table)) continue;
    const found = (await knex.raw(
      `select exists (select 1 from information_schema.columns where table_schema = current_schema() and table_name = ? and column_name = '_available_at') as has,
              exists (select 1 from information_schema.tables where table_schema = current_schema() and table_name = ?) as exists`,
      [table, table],
    )) as { rows: Array<{ has: boolean; exists: boolean }> };
    const row = found.rows[0];
    if (row?.exists && !row.has) {
      await transaction(knex, async (trx) => {
        await raw(trx, sql`alter table ${id(table)} add column if not exists _available_at timestamptz`);
        await raw(trx, sql`update ${id(table)} set _available_at = ${id(shape.eventTime)} where _available_at is null`);
        await raw(trx, sql`alter table ${id(table)} alter column _available_at set not null`);
      });
    }
    if (row?.exists) seen.add(table);
  }
}

/**
 * A commit's staging table: the offline table's columns, `_commit_id` defaulting to
 * the commit. Not a partition: committing moves its rows into their range partitions.
 *
 * Given the span the rows' event times are expected in (the run's window, or a hint such
 * as a Parquet file's statistics; at most MAX_STAGED_RANGES ranges), and when some range
 * of it has no offline partition yet, the table is partitioned like the offline table:
 * one partition per such range and a default one for every other row. At commit each of
 * those ranges is handed over whole (detached here, attached there, with the index the
 * commit built on it): a backfill's rows are written once, not copied again.
 */
export async function createCommitTable(knex: Knex, shape: GroupShape, commitId: number, span?: TimeSpan): Promise<string> {
  const t = groupTables(shape.name, shape.version);
  const table = t.commit(commitId);
  const spanned = span ? rangesOf(span.start, span.end, shape.partitionBy) : [];
  // Only ranges the offline table lacks get a partition: rows of a stored range are
  // copied into it anyway, and a run that opens no range (an hourly run into its
  // month) stages into a plain table, with no partitions to create and drop.
  const stored = spanned.length === 0 || spanned.length > MAX_STAGED_RANGES ? undefined : await storedRanges(knex, shape);
  const ranges = stored ? spanned.filter((lo) => !stored.has(t.range(lo))) : [];
  const kind = ((await knex.raw(`select c.relkind as kind from pg_class c where c.oid = to_regclass(?)`, [table])) as { rows: Array<{ kind: string }> }).rows[0]?.kind;
  // An attempt's retry keeps the table its first try made (plain, or partitioned: then its partitions are made sure of).
  const partitioned = kind === undefined ? ranges.length > 0 : kind === 'p';
  if (!partitioned) {
    await raw(knex, sql`create table if not exists ${id(table)} (like ${id(t.offline)})`);
    await raw(knex, sql`alter table ${id(table)} alter column _commit_id set default ${int(commitId)}`);
    return table;
  }
  await raw(knex, sql`create table if not exists ${id(table)} (like ${id(t.offline)}) partition by range (${id(shape.eventTime)})`);
  // Set before the partitions exist, which take it from the table they are made of.
  await raw(knex, sql`alter table ${id(table)} alter column _commit_id set default ${int(commitId)}`);
  for (const lo of ranges) {
    await raw(knex, sql`create table if not exists ${id(`${table}_p${dayStamp(lo)}`)} partition of ${id(table)} ${rangeBounds(lo, shape.partitionBy)}`);
  }
  await raw(knex, sql`create table if not exists ${id(`${table}_rest`)} partition of ${id(table)} default`);
  return table;
}

/** The offline partitions of a group, oldest range first, with their ranges. */
export async function rangePartitions(knex: Knex, group: GroupShape): Promise<Array<{ partition: string; start: Date; end: Date }>> {
  const t = groupTables(group.name, group.version);
  const rows = (await raw(
    knex,
    sql`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = to_regclass(${t.offline}) order by 1`,
  )) as { rows: Array<{ name: string }> };
  return rows.rows.flatMap(({ name }) => {
    const day = /__p(\d{4})(\d{2})(\d{2})$/.exec(name);
    if (!day) return [];
    const start = new Date(Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3])));
    return [{ partition: name, start, end: rangeEnd(start, group.partitionBy) }];
  });
}

/** The names of the group's offline range partitions. */
async function storedRanges(knex: Knex, group: GroupShape): Promise<Set<string>> {
  return new Set((await rangePartitions(knex, group)).map((p) => p.partition));
}

/** A range partition's bounds: `for values from (lo) to (the end of its range)`. */
function rangeBounds(lo: Date, unit: PartitionRange): Sql {
  return sql`for values from (${timestampLiteral(lo)}) to (${timestampLiteral(rangeEnd(lo, unit))})`;
}

/** Gives `table` its range as a CHECK constraint, so attaching it for that range scans nothing more. */
function rangeCheck(shape: GroupShape, table: string, lo: Date): Sql {
  const et = id(shape.eventTime);
  return sql`alter table ${id(table)} add constraint ${id(`${table}_range`)} check (${et} >= ${timestampLiteral(lo)} and ${et} < ${timestampLiteral(rangeEnd(lo, shape.partitionBy))})`;
}

/** A range partition's unique (entity keys, event time) index. */
function keyIndex(shape: GroupShape, table: string): Sql {
  return sql`create unique index ${id(`${table}_key`)} on ${id(table)} (${ids([...shape.entityKeys, shape.eventTime])})`;
}

/** Pages a range partition's time index summarises per entry: 256 KB of rows, about 4,000 flights. */
const TIME_INDEX_PAGES = 32;

/**
 * A range partition's BRIN index on the event time: for each run of pages, the
 * earliest and latest time in them. A read of part of a partition's range (a batch
 * inference partition of ten days in a month, a slice of a training dataset's spine)
 * then reads the pages that can hold its times rather than every page (a seq scan of
 * the month read three times the rows it kept). Rows come in roughly in time order,
 * so its runs are narrow; where they are not (a group compacted in key order), the
 * planner, which knows the order from the statistics, leaves it unused. Tiny, and
 * cheap to keep up: a page run's summary only widens as rows are added.
 */
export function timeIndex(shape: GroupShape, table: string): Sql {
  return sql`create index if not exists ${id(`${table}_time`)} on ${id(table)} using brin (${id(shape.eventTime)}) with (pages_per_range = ${kw(String(TIME_INDEX_PAGES))})`;
}

/**
 * A new range partition's time index, and its statistics: without them (until
 * autovacuum's next pass) the planner guessed a read of ten days of a month's flights
 * would keep about a thousand rows (there were 170k), and sorted (spilling to disk)
 * where a hash was due. ANALYZE samples 300 rows per unit of the statistics target: at
 * Postgres' default (100) this added 3.5 s to the bench's six-month backfill (twelve
 * partitions, the airport delays' 226 MB a month), at 20 about 1 s; a smaller sample is
 * plenty for the estimates that went wrong. Compaction analyzes with the default.
 */
async function finishRange(trx: Knex.Transaction, shape: GroupShape, table: string): Promise<void> {
  await raw(trx, timeIndex(shape, table));
  const target = ((await trx.raw(`select current_setting('default_statistics_target') as target`)) as { rows: Array<{ target: string }> }).rows[0]?.target ?? '100';
  await trx.raw(`select set_config('default_statistics_target', ?, true)`, [String(NEW_RANGE_STATISTICS_TARGET)]);
  await raw(trx, sql`analyze ${id(table)}`);
  await trx.raw(`select set_config('default_statistics_target', ?, true)`, [target]);
}

/** The statistics target a new range partition is analyzed with (a sample of 6,000 rows). */
const NEW_RANGE_STATISTICS_TARGET = 20;

/** A span of more ranges than this (more than a year of days) stages into one plain table. */
const MAX_STAGED_RANGES = 400;

/** The starts of the ranges that [start, end) touches, in order. */
function rangesOf(start: Date, end: Date, unit: PartitionRange): Date[] {
  const out: Date[] = [];
  for (let lo = rangeStart(start, unit); lo < end && out.length <= MAX_STAGED_RANGES; lo = rangeEnd(lo, unit)) out.push(lo);
  return out;
}

/** The start of the range `t` falls in (Postgres' date_trunc in UTC: a week starts on Monday). */
function rangeStart(t: Date, unit: PartitionRange): Date {
  const [y, m, d] = [t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()];
  switch (unit) {
    case 'day':
      return new Date(Date.UTC(y, m, d));
    case 'week':
      return new Date(Date.UTC(y, m, d - ((t.getUTCDay() + 6) % 7)));
    case 'month':
      return new Date(Date.UTC(y, m, 1));
    case 'year':
      return new Date(Date.UTC(y, 0, 1));
  }
}

/** `YYYYMMDD` of a UTC day, as range partitions are named. */
function dayStamp(t: Date): string {
  return t.toISOString().slice(0, 10).replaceAll('-', '');
}

export async function dropCommitTable(knex: Knex, shape: GroupShape, commitId: number): Promise<void> {
  await raw(knex, sql`drop table if exists ${id(groupTables(shape.name, shape.version).commit(commitId))}`);
}

/** The end of the range that starts at `start`: ranges are calendar units in UTC (a week starts on Monday). */
export function rangeEnd(start: Date, unit: PartitionRange): Date {
  const [y, m, d] = [start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()];
  switch (unit) {
    case 'day':
      return new Date(Date.UTC(y, m, d + 1));
    case 'week':
      return new Date(Date.UTC(y, m, d + 7));
    case 'month':
      return new Date(Date.UTC(y, m + 1, 1));
    case 'year':
      return new Date(Date.UTC(y + 1, 0, 1));
  }
}

/** A timestamp literal, for DDL (which takes no parameters); from a Date, never from input. */
function timestampLiteral(t: Date): Sql {
  return kw(`'${t.toISOString()}'::timestamptz`);
}

/**
 * Moves the rows of `from` (a commit's staging table, or an old-layout offline table)
 * into the offline table's range partitions, inside the caller's transaction.
 *
 * First, a staging table partitioned by range (createCommitTable) hands over each of
 * its ranges the offline table does not have yet, whole (adoptStagedRanges): no row
 * is copied. Then the rows left (ranges the offline table has, rows outside the
 * window, or a plain staging table's) move in one scan of `from`: a range without a
 * partition gets one first, created with its range checked and attached while empty
 * (so attaching scans nothing; created in this transaction, it skips the WAL on a
 * wal_level=minimal server), then one INSERT into the offline table routes every row
 * to its range, and the new partitions get their key index built once they are full
 * (an index built at the end, not row by row). One scan instead of one per range took
 * a 6-month backfill's 8.5M rows from 19 s to 15.5 s.
 */
export async function storeInRanges(trx: Knex.Transaction, shape: GroupShape, from: string): Promise<void> {
  const t = groupTables(shape.name, shape.version);
  const et = id(shape.eventTime);
  const stored = await storedRanges(trx, shape);
  await adoptStagedRanges(trx, shape, from, stored);
  const starts = (await raw(
    trx,
    sql`select distinct to_char(date_trunc(${shape.partitionBy}, ${et} at time zone 'UTC'), 'YYYY-MM-DD') as lo from ${id(from)} order by 1`,
  )) as { rows: Array<{ lo: string }> };
  const created: string[] = [];
  for (const { lo: day } of starts.rows) {
    const lo = new Date(`${day}T00:00:00Z`);
    const table = t.range(lo);
    if (stored.has(table)) continue;
    await raw(trx, sql`create table ${id(table)} (like ${id(t.offline)} including defaults)`);
    await raw(trx, rangeCheck(shape, table, lo));
    await raw(trx, sql`alter table ${id(t.offline)} attach partition ${id(table)} ${rangeBounds(lo, shape.partitionBy)}`);
    created.push(table);
  }
  const columns = ids([...featureColumns(shape), ...OFFLINE_EXTRA_COLUMNS]);
  await raw(trx, sql`insert into ${id(t.offline)} (${columns}) select ${columns} from ${id(from)}`);
  for (const table of created) {
    await raw(trx, keyIndex(shape, table));
    await finishRange(trx, shape, table);
  }
}

/**
 * The range partitions of a staging table whose ranges the offline table lacks become
 * the offline table's: each is detached, given its range as a CHECK constraint (one
 * read of its rows, which lets the attach skip its own check), renamed, and attached
 * with the unique (keys, event time) index the commit built on it. Empty ones stay
 * (dropped with the staging table).
 */
async function adoptStagedRanges(trx: Knex.Transaction, shape: GroupShape, from: string, stored: Set<string>): Promise<void> {
  const t = groupTables(shape.name, shape.version);
  // Only a table partitioned by range of the event time (a staging table, not an old-layout offline table).
  const byEventTime = ((await trx.raw(`select coalesce(pg_get_partkeydef(to_regclass(?)) = 'RANGE (' || quote_ident(?) || ')', false) as ok`, [from, shape.eventTime])) as { rows: Array<{ ok: boolean }> }).rows[0]?.ok;
  if (!byEventTime) return;
  // Each partition's lower bound, read back from its bound's text (which carries its UTC offset): null for the default partition.
  const staged = (await trx.raw(
    `select c.relname as name, (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz as lo
     from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = to_regclass(?) order by 2`,
    [from],
  )) as { rows: Array<{ name: string; lo: Date | null }> };
  for (const { name, lo } of staged.rows) {
    if (!lo) continue;
    const table = t.range(lo);
    if (stored.has(table)) continue;
    const empty = ((await raw(trx, sql`select not exists (select 1 from ${id(name)}) as empty`)) as { rows: Array<{ empty: boolean }> }).rows[0]?.empty;
    if (empty) continue;
    await raw(trx, sql`alter table ${id(from)} detach partition ${id(name)}`);
    const index = ((await trx.raw(`select c.relname as name from pg_index i join pg_class c on c.oid = i.indexrelid where i.indrelid = to_regclass(?) and i.indisunique`, [name])) as { rows: Array<{ name: string }> }).rows[0]?.name;
    await raw(trx, sql`alter table ${id(name)} rename to ${id(table)}`);
    await raw(trx, rangeCheck(shape, table, lo));
    await raw(trx, sql`alter table ${id(t.offline)} attach partition ${id(table)} ${rangeBounds(lo, shape.partitionBy)}`);
    // The commit builds the staging table's unique index before it stores: kept, renamed.
    if (index) await raw(trx, sql`alter index ${id(index)} rename to ${id(`${table}_key`)}`);
    else await raw(trx, keyIndex(shape, table));
    await finishRange(trx, shape, table);
    stored.add(table);
  }
}

/**
 * An offline table of the layout before event-time partitions (RANGE on `_commit_id`,
 * one partition per commit) is rebuilt in the new one: its rows move into range
 * partitions, keeping their commit ids, so every snapshot reads as before. One
 * transaction; readers and commits of the group wait for it.
 */
async function ensureRangeLayout(knex: Knex, shape: GroupShape): Promise<void> {
  const t = groupTables(shape.name, shape.version);
  const seen = upgradedIn(knex);
  const key = `${t.offline}#ranges`;
  if (seen.has(key)) return;
  // Read from the catalogs (MVCC), not by opening the table: another process may be rebuilding it.
  const partitionKey = async (db: Knex) =>
    (
      (await db.raw(
        `select a.attname as key from pg_partitioned_table p join pg_class c on c.oid = p.partrelid join pg_namespace n on n.oid = c.relnamespace
         join pg_attribute a on a.attrelid = c.oid and a.attnum = p.partattrs[0] where n.nspname = current_schema() and c.relname = ?`,
        [t.offline],
      )) as { rows: Array<{ key: string }> }
    ).rows[0]?.key;
  if ((await partitionKey(knex)) === '_commit_id') {
    // Concurrent readers of this process wait for one rebuild.
    let rebuild = rebuilding.get(key);
    if (!rebuild) {
      rebuild = transaction(knex, async (trx) => {
        await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`fti.offline_layout:${key}`]);
        if ((await partitionKey(trx)) !== '_commit_id') return;
        await raw(trx, sql`lock table ${id(t.offline)} in access exclusive mode`);
        const old = `${t.offline}__by_commit`;
        await raw(trx, sql`alter table ${id(t.offline)} rename to ${id(old)}`);
        await createOffline(trx, shape, t.offline);
        await storeInRanges(trx, shape, old);
        await raw(trx, sql`drop table ${id(old)}`);
      }).finally(() => rebuilding.delete(key));
      rebuilding.set(key, rebuild);
    }
    await rebuild;
  }
  seen.add(key);
}

const rebuilding = new Map<string, Promise<void>>();
