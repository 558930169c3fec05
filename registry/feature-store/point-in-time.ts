/**
 * The point-in-time join: for each spine row, the latest row of each joined group
 * with an event time strictly before the spine row's. Used for training datasets
 * and batch inference; reads every group as of a given commit (a consistent,
 * reproducible snapshot).
 *
 * Two plans, same result:
 *  - window: set-based. Spine rows and feature rows are merged into one stream per
 *    join key, ordered by time with spine rows first at equal times, and each spine
 *    row carries forward the newest feature row seen before it (max of a row number
 *    that increases with time). One sort per join; fast for big spines.
 *  - lateral: one index probe per spine row (latest feature row before it). Fast
 *    for small spines (a day of batch inference), slow for millions of rows.
 */
import { col, id, ids, join, raw, sql, type Sql } from '../sql.ts';
import type { Knex } from 'knex';
import { snapshotSql } from './reads.ts';
import type { GroupShape } from './tables.ts';

export interface PitFeature {
  column: string;
  as: string;
}

export interface PitJoin {
  shape: GroupShape;
  commitId: number;
  /** Joined group's entity key -> spine column. */
  on: Record<string, string>;
  features: PitFeature[];
}

export interface PitQuery {
  spine: { shape: GroupShape; commitId: number };
  /** Spine label column: included, and spine rows without a label are left out. */
  label?: string;
  spineFeatures: PitFeature[];
  joins: PitJoin[];
  start?: Date;
  end?: Date;
  strategy: 'window' | 'lateral';
}

/** Columns: spine keys, spine event time, the label (if any), then every feature alias. */
export function pointInTimeSql(q: PitQuery): Sql {
  return q.strategy === 'window' ? windowPlan(q) : lateralPlan(q);
}

function spineFilter(q: PitQuery, alias: string): Sql {
  const et = q.spine.shape.eventTime;
  const parts: Sql[] = [sql`true`];
  if (q.start) parts.push(sql`${col(alias, et)} >= ${q.start}`);
  if (q.end) parts.push(sql`${col(alias, et)} < ${q.end}`);
  if (q.label) parts.push(sql`${col(alias, q.label)} is not null`);
  return join(parts, ' and ');
}

function spineColumns(q: PitQuery, alias: string): Sql[] {
  const { entityKeys, eventTime } = q.spine.shape;
  const out = [...entityKeys, eventTime].map((c) => col(alias, c));
  if (q.label) out.push(col(alias, q.label));
  for (const f of q.spineFeatures) out.push(sql`${col(alias, f.column)} as ${id(f.as)}`);
  return out;
}

function windowPlan(q: PitQuery): Sql {
  const et = q.spine.shape.eventTime;
  const joinColumns = q.joins.flatMap((j, ji) => j.shape.entityKeys.map((k, ki) => sql`${col('s', j.on[k] as string)}::text as ${id(`_j${ji}_k${ki}`)}`));
  const ctes: Sql[] = [
    sql`_spine as (select ${join([...spineColumns(q, 's'), ...joinColumns], ', ')}, row_number() over () as _sid
        from (${snapshotSql(q.spine.shape, q.spine.commitId)}) s where ${spineFilter(q, 's')})`,
  ];
  const spineOut = [...q.spine.shape.entityKeys, et, ...(q.label ? [q.label] : []), ...q.spineFeatures.map((x) => x.as)];
  const selects: Sql[] = spineOut.map((c) => col('_spine', c));
  const joins: Sql[] = [];
  q.joins.forEach((j, ji) => {
    const keys = j.shape.entityKeys;
    const keyAliases = keys.map((_, ki) => `_k${ki}`);
    const spineKeys = keys.map((_, ki) => `_j${ji}_k${ki}`);
    const f = `_f${ji}`;
    const m = `_m${ji}`;
    const timeBound = q.end ? sql`where ${id(j.shape.eventTime)} < ${q.end}` : sql``;
    ctes.push(
      sql`${id(f)} as (select ${join(keys.map((k, ki) => sql`${id(k)}::text as ${id(keyAliases[ki] as string)}`), ', ')}, ${id(j.shape.eventTime)} as _t,
            ${join(j.features.map((x) => sql`${id(x.column)} as ${id(x.as)}`), ', ')},
            row_number() over (order by ${ids(keys)}, ${id(j.shape.eventTime)}) as _fid
          from (${snapshotSql(j.shape, j.commitId)}) g ${timeBound})`,
      sql`${id(m)} as (select _sid, _fid from (
            select _sid, _kind, max(_fid) over (partition by ${ids(keyAliases)} order by _t, _kind rows unbounded preceding) as _fid
            from (
              select ${join(spineKeys.map((s, ki) => sql`${id(s)} as ${id(keyAliases[ki] as string)}`), ', ')}, ${id(et)} as _t, 0 as _kind, _sid, null::bigint as _fid from _spine
              union all
              select ${ids(keyAliases)}, _t, 1 as _kind, null::bigint, _fid from ${id(f)}
            ) u
          ) w where _kind = 0)`,
    );
    for (const x of j.features) selects.push(col(f, x.as));
    joins.push(sql`left join ${id(m)} on ${col(m, '_sid')} = _spine._sid left join ${id(f)} on ${col(f, '_fid')} = ${col(m, '_fid')}`);
  });
  return sql`with ${join(ctes, ', ')} select ${join(selects, ', ')} from _spine ${join(joins, ' ')}`;
}

function lateralPlan(q: PitQuery): Sql {
  const laterals = q.joins.map((j, ji) => {
    const alias = `_f${ji}`;
    const match = join(
      j.shape.entityKeys.map((k) => sql`${col('g', k)} = ${col('s', j.on[k] as string)}`),
      ' and ',
    );
    return {
      select: j.features.map((x) => col(alias, x.as)),
      from: sql`left join lateral (select ${join(j.features.map((x) => sql`${col('g', x.column)} as ${id(x.as)}`), ', ')}
              from (${snapshotSql(j.shape, j.commitId)}) g
              where ${match} and ${col('g', j.shape.eventTime)} < ${col('s', q.spine.shape.eventTime)}
              order by ${col('g', j.shape.eventTime)} desc limit 1) ${id(alias)} on true`,
    };
  });
  return sql`select ${join([...spineColumns(q, 's'), ...laterals.flatMap((l) => l.select)], ', ')}
             from (${snapshotSql(q.spine.shape, q.spine.commitId)}) s ${join(laterals.map((l) => l.from), ' ')}
             where ${spineFilter(q, 's')}`;
}

/** Spine rows in the window (one scan of the spine), to pick a plan. */
export async function countSpineRows(knex: Knex, q: PitQuery): Promise<number> {
  const result = (await raw(knex, sql`select count(*)::bigint as n from (${snapshotSql(q.spine.shape, q.spine.commitId)}) s where ${spineFilter(q, 's')}`)) as { rows: Array<{ n: number }> };
  return result.rows[0]?.n ?? 0;
}
