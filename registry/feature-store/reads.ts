/**
 * Reading a feature group: the offline store as of its latest commit or as of any
 * earlier commit (time travel), lazily (Feast's RetrievalJob: stream or
 * materialize), and the online store by entity key in one indexed query.
 */
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../../core/errors.ts';
import { id, ids, join, raw, sql, streamQuery, toNative, type Sql } from '../db/index.ts';
import { featureColumns, groupTables, type GroupShape } from './tables.ts';

export type FeatureRecord = Record<string, unknown>;

/**
 * SQL for the group's rows as they were right after commit `asOf` (or now): rows
 * written by commits up to it, plus rows superseded only after it. Columns: the
 * features, `_commit_id` and `_row_number`.
 */
export function snapshotSql(group: GroupShape, asOf?: number): Sql {
  const t = groupTables(group.name, group.version);
  const columns = [...featureColumns(group), '_commit_id', '_row_number'];
  if (asOf === undefined) return sql`select ${ids(columns)} from ${id(t.offline)}`;
  return sql`select ${ids(columns)} from ${id(t.offline)} where _commit_id <= ${asOf}
             union all
             select ${ids(columns)} from ${id(t.history)} where _commit_id <= ${asOf} and _superseded_by > ${asOf}`;
}

export interface ReadOptions {
  /** Time travel: the rows as of this commit. Default: the latest commit. */
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
    readonly query: Sql,
  ) {}

  /** Rows in batches through a server-side cursor; memory stays bounded. */
  stream(batchSize = 10_000): AsyncGenerator<FeatureRecord[]> {
    const native = toNative(this.knex, this.query);
    return streamQuery<FeatureRecord>(this.knex, native.sql, native.bindings, batchSize);
  }

  async toArray(limit = 1_000_000): Promise<FeatureRecord[]> {
    const result = (await raw(this.knex, sql`select * from (${this.query}) q limit ${limit}`)) as { rows: FeatureRecord[] };
    return result.rows;
  }

  async count(): Promise<number> {
    const result = (await raw(this.knex, sql`select count(*)::bigint as n from (${this.query}) q`)) as { rows: Array<{ n: number }> };
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
  return new RetrievalJob(knex, sql`select ${ids(columns)} from (${snapshotSql(group, options.asOfCommit)}) s${where} order by ${order}`);
}

/**
 * The online row of each requested entity, in request order (undefined where the
 * store has none). One indexed query: the keys are bound as arrays and joined.
 */
export async function getOnlineFeatures(knex: Knex, group: GroupShape, keys: Array<Record<string, unknown>>): Promise<Array<FeatureRecord | undefined>> {
  if (!group.online) throw new FtiError(FailureType.InvalidInput, `feature group ${group.name} v${group.version} is not online-enabled`);
  if (keys.length === 0) return [];
  const t = groupTables(group.name, group.version);
  const types = Object.fromEntries(group.columns.map((c) => [c.name, c.type]));
  const arrays = group.entityKeys.map((k) => {
    const values = keys.map((entity) => {
      if (!(k in entity)) throw new FtiError(FailureType.InvalidInput, `missing entity key ${k} for feature group ${group.name}`);
      return entity[k];
    });
    return sql`${values}::${pgArrayType(types[k])}`;
  });
  const keyNames = group.entityKeys.map((k, i) => `k${i}`);
  const on = join(group.entityKeys.map((k, i) => sql`o.${id(k)} = q.${id(keyNames[i] as string)}`), ' and ');
  const result = (await raw(
    knex,
    sql`select q.ord, ${join(featureColumns(group).map((c) => sql`o.${id(c)}`), ', ')}
        from unnest(${join(arrays, ', ')}) with ordinality as q(${ids(keyNames)}, ord)
        join ${id(t.online)} o on ${on}`,
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
