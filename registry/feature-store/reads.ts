/**
 * Reading a feature group: the offline store as of its latest commit or as of any
 * earlier commit (time travel), lazily (Feast's RetrievalJob: stream or
 * materialize), and the online store by entity key in one indexed query.
 */
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../../core/errors.ts';
import { col, id, ids, join, kw, raw, sql, streamQuery, toNative, type Sql } from '../db/index.ts';
import { snapshotPin, type SnapshotPin } from './commits.ts';
import { upgradeGroupTables, featureColumns, groupTables, type GroupShape } from './tables.ts';

export type FeatureRecord = Record<string, unknown>;

/**
 * Which rows of the group's tables a snapshot holds: offline rows not written by a
 * commit that became visible after the pin, and history rows written before it and
 * superseded after it. The commits after the pin are read in the same statement, so
 * one that lands while the query runs is left out too; for the latest snapshot there
 * are none. (A list of the visible ids instead grows with every commit, and Postgres
 * plans each id: milliseconds per use after a year of hourly commits.)
 */
export function snapshotFilter(pin: SnapshotPin, alias?: string): { offline: Sql; history: Sql } {
  const later = sql`select c.id from feature_commits c where c.feature_group_id = ${pin.featureGroupId} and c.visible_seq > ${pin.visibleSeq}`;
  const commit = alias ? col(alias, '_commit_id') : id('_commit_id');
  const supersededBy = alias ? col(alias, '_superseded_by') : id('_superseded_by');
  return {
    offline: sql`${commit} not in (${later})`,
    history: sql`${commit} not in (${later}) and ${supersededBy} in (${later})`,
  };
}

/**
 * SQL for the group's rows in a snapshot (the latest when `pin` is undefined);
 * superseded rows live in the history table. Columns: the features, `_commit_id`,
 * `_row_number` and `_available_at`; or only `only` (a count that reads the event time
 * alone spares Postgres carrying every column through the union: a fifth of its time).
 */
export function snapshotSql(group: GroupShape, pin?: SnapshotPin, only?: readonly string[]): Sql {
  const t = groupTables(group.name, group.version);
  const columns = only ?? [...featureColumns(group), '_commit_id', '_row_number', '_available_at'];
  if (pin === undefined) return sql`select ${ids(columns)} from ${id(t.offline)}`;
  const filter = snapshotFilter(pin);
  return sql`select ${ids(columns)} from ${id(t.offline)} where ${filter.offline}
             union all
             select ${ids(columns)} from ${id(t.history)} where ${filter.history}`;
}

export interface ReadOptions {
  /** Time travel: the rows as of this commit (those visible when it became visible). Default: now. */
  asOfCommit?: number;
  /** Event-time window [start, end). */
  start?: Date;
  end?: Date;
  /** Columns to return (default: all features). */
  columns?: string[];
}

/** A lazy offline read: nothing runs until it is streamed, counted or materialized. */
export class RetrievalJob {
  constructor(
    private readonly knex: Knex,
    /** The query, once what it reads (a snapshot's pin) is resolved. */
    private readonly query: () => Promise<Sql>,
  ) {}

  /** Rows in batches through a server-side cursor; memory stays bounded. */
  async *stream(batchSize = 10_000): AsyncGenerator<FeatureRecord[]> {
    const native = toNative(this.knex, await this.query());
    yield* streamQuery<FeatureRecord>(this.knex, native.sql, native.bindings, batchSize);
  }

  async toArray(limit = 1_000_000): Promise<FeatureRecord[]> {
    const result = (await raw(this.knex, sql`select * from (${await this.query()}) q limit ${limit}`)) as { rows: FeatureRecord[] };
    return result.rows;
  }

  /** The query itself (Feast's RetrievalJob.to_sql): for a caller that runs it inside its own statement. */
  toSql(): Promise<Sql> {
    return this.query();
  }

  /** The tables the read would scan, from Postgres' plan: a window's read names only the partitions of its event-time ranges. */
  async scans(): Promise<string[]> {
    return scannedTables(this.knex, await this.query());
  }

  async count(): Promise<number> {
    const result = (await raw(this.knex, sql`select count(*)::bigint as n from (${await this.query()}) q`)) as { rows: Array<{ n: number }> };
    return result.rows[0]?.n ?? 0;
  }
}

export function readOffline(knex: Knex, group: GroupShape, options: ReadOptions = {}): RetrievalJob {
  const columns = options.columns ?? featureColumns(group);
  const known = new Set(featureColumns(group));
  for (const c of columns) if (!known.has(c)) throw new FtiError(FailureType.InvalidInput, `feature group ${group.name} has no feature ${c}`);
  const filters: Sql[] = [];
  if (options.start) filters.push(sql`${id(group.eventTime)} >= ${options.start}`);
  if (options.end) filters.push(sql`${id(group.eventTime)} < ${options.end}`);
  const where = filters.length ? sql` where ${join(filters, ' and ')}` : sql``;
  const order = ids([group.eventTime, ...group.entityKeys]);
  return new RetrievalJob(knex, async () => {
    await upgradeGroupTables(knex, group);
    const pin = options.asOfCommit === undefined ? undefined : await snapshotPin(knex, options.asOfCommit);
    return sql`select ${ids(columns)} from (${snapshotSql(group, pin)}) s${where} order by ${order}`;
  });
}

/**
 * Joins each outer row to a group's online row under `alias`: the entity's row, or for
 * a windowed group (rows are change points) the one in force at `at`, by one probe of
 * its (keys, time) key. `match(a)` matches the online table, named `a`, to the outer row.
 */
export function joinOnlineRow(group: GroupShape, alias: string, match: (a: string) => Sql, at: Sql, kind: 'join' | 'left join'): Sql {
  const table = id(groupTables(group.name, group.version).online);
  if (!group.windowed) return sql`${kw(kind)} ${table} ${id(alias)} on ${match(alias)}`;
  const time = col('o', group.eventTime);
  return sql`${kw(kind)} lateral (select * from ${table} o where ${match('o')} and ${time} < ${at} order by ${time} desc limit 1) ${id(alias)} on true`;
}

/**
 * The online row of each requested entity, in request order (undefined where the
 * store has none), as of `at` for a windowed group (default: now). One indexed
 * query: the keys are bound as arrays and joined.
 */
export async function getOnlineFeatures(knex: Knex, group: GroupShape, keys: Array<Record<string, unknown>>, at: Date = new Date()): Promise<Array<FeatureRecord | undefined>> {
  if (!group.online) throw new FtiError(FailureType.InvalidInput, `feature group ${group.name} v${group.version} is not online-enabled`);
  if (keys.length === 0) return [];
  const types = Object.fromEntries(group.columns.map((c) => [c.name, c.type]));
  const arrays = group.entityKeys.map((k) => {
    const values = keys.map((entity) => {
      if (!(k in entity)) throw new FtiError(FailureType.InvalidInput, `missing entity key ${k} for feature group ${group.name}`);
      return entity[k];
    });
    return sql`${values}::${pgArrayType(types[k])}`;
  });
  const keyNames = group.entityKeys.map((k, i) => `k${i}`);
  const online = joinOnlineRow(group, 'o', (o) => join(group.entityKeys.map((k, i) => sql`${col(o, k)} = q.${id(keyNames[i] as string)}`), ' and '), sql`${at}`, 'join');
  const result = (await raw(
    knex,
    sql`select q.ord, ${join(featureColumns(group).map((c) => sql`o.${id(c)}`), ', ')}
        from unnest(${join(arrays, ', ')}) with ordinality as q(${ids(keyNames)}, ord)
        ${online}`,
  )) as { rows: Array<FeatureRecord & { ord: number }> };
  const out: Array<FeatureRecord | undefined> = new Array(keys.length).fill(undefined);
  for (const { ord, ...row } of result.rows) out[Number(ord) - 1] = row;
  return out;
}

function pgArrayType(type: string | undefined): Sql {
  switch (type) {
    case 'int':
      return sql`bigint[]`;
    case 'float':
      return sql`double precision[]`;
    case 'bool':
      return sql`boolean[]`;
    case 'timestamp':
      return sql`timestamptz[]`;
    default:
      return sql`text[]`;
  }
}

/** The tables (partitions included) a query's plan reads, sorted, each once: partitions pruned away are absent. */
export async function scannedTables(knex: Knex, query: Sql): Promise<string[]> {
  const result = (await raw(knex, sql`explain (format json) ${query}`)) as { rows: Array<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }> };
  const names = new Set<string>();
  const walk = (node: PlanNode) => {
    if (node['Relation Name']) names.add(node['Relation Name']);
    for (const child of node.Plans ?? []) walk(child);
  };
  for (const plan of result.rows[0]?.['QUERY PLAN'] ?? []) walk(plan.Plan);
  return [...names].sort();
}

interface PlanNode {
  'Relation Name'?: string;
  Plans?: PlanNode[];
}
