/**
 * Windowed aggregates of a source group, computed in Postgres into a derived
 * group's commit table. Point-in-time: a row at event time t aggregates the source
 * events in [t - window, t), strictly before t.
 *
 * Source events are first collapsed to one bucket per (entity, event time), so
 * simultaneous events never see each other, and each window is then a RANGE frame
 * over the buckets that excludes the current one. Work can be split by entity hash
 * into partitions that run as parallel activities (each its own backend).
 */
import type { Knex } from 'knex';
import { aggregateFeatureName, type Aggregation } from '../../features/definitions.ts';
import { durationInterval, durationMs } from '../../features/duration.ts';
import { id, ids, int, join, kw, raw, sql, type Sql } from '../sql.ts';
import { snapshotSql } from './reads.ts';
import { groupTables, type GroupShape } from './tables.ts';

export interface AggregateRun {
  target: GroupShape;
  aggregation: Aggregation;
  source: GroupShape;
  /** The source commit read (a consistent snapshot). */
  sourceCommitId: number;
  commitId: number;
  start?: Date;
  end?: Date;
  partition: number;
  partitions: number;
}

/** Row numbers of partition p are p·2^40 + n, so partitions never collide. */
export function partitionRowRange(partition: number): { rowStart: number; rowEnd: number } {
  return { rowStart: partition * 2 ** 40, rowEnd: (partition + 1) * 2 ** 40 };
}

export async function computeAggregates(knex: Knex, run: AggregateRun): Promise<number> {
  const { target, aggregation, source } = run;
  const stage = groupTables(target.name, target.version).commit(run.commitId);
  const sourceTime = source.eventTime;
  const keyPairs = Object.entries(aggregation.groupBy); // [targetKey, sourceColumn]
  const sourceTypes = Object.fromEntries(source.columns.map((c) => [c.name, c.type]));
  const longest = Math.max(...aggregation.windows.map(durationMs));

  // src: the source snapshot within [start - longest window, end), keys renamed.
  const filters: Sql[] = [];
  if (run.start) filters.push(sql`${id(sourceTime)} >= ${new Date(run.start.getTime() - longest)}`);
  if (run.end) filters.push(sql`${id(sourceTime)} < ${run.end}`);
  if (run.partitions > 1) {
    const hashInput = join(keyPairs.map(([, s]) => sql`${id(s)}::text`), ` || '|' || `);
    filters.push(sql`(hashtext(${hashInput}) & 2147483647) % ${int(run.partitions)} = ${int(run.partition)}`);
  }
  const where = filters.length ? sql`where ${join(filters, ' and ')}` : sql``;

  // One bucket per (keys, time): sums, counts, minima and maxima for each metric.
  const bucketParts: Sql[] = [sql`count(*)::bigint as _n`];
  aggregation.metrics.forEach((m, i) => {
    if (!m.column) return;
    const x = sourceTypes[m.column] === 'bool' ? sql`(${id(m.column)})::int` : sql`(${id(m.column)})::double precision`;
    bucketParts.push(sql`sum(${x}) as ${id(`_s${i}`)}`, sql`count(${x})::bigint as ${id(`_c${i}`)}`, sql`min(${x}) as ${id(`_l${i}`)}`, sql`max(${x}) as ${id(`_h${i}`)}`);
  });
  const targetKeys = keyPairs.map(([k]) => k);
  const bucketKeys = join(keyPairs.map(([k, s]) => sql`${id(s)}::text as ${id(k)}`), ', ');

  const windows = aggregation.windows.map((w, wi) => ({ w, name: `_w${wi}` }));
  const outputs: Sql[] = [];
  const outputNames: string[] = [];
  for (const { w, name } of windows) {
    aggregation.metrics.forEach((m, i) => {
      const over = sql`over ${id(name)}`;
      const value =
        m.fn === 'count'
          ? m.column
            ? sql`coalesce(sum(${id(`_c${i}`)}) ${over}, 0)::bigint`
            : sql`coalesce(sum(_n) ${over}, 0)::bigint`
          : m.fn === 'avg'
            ? sql`(sum(${id(`_s${i}`)}) ${over} / nullif(sum(${id(`_c${i}`)}) ${over}, 0))::double precision`
            : m.fn === 'sum'
              ? sql`(sum(${id(`_s${i}`)}) ${over})::double precision`
              : m.fn === 'min'
                ? sql`(min(${id(`_l${i}`)}) ${over})::double precision`
                : sql`(max(${id(`_h${i}`)}) ${over})::double precision`;
      const column = aggregateFeatureName(m.name, w);
      outputs.push(sql`${value} as ${id(column)}`);
      outputNames.push(column);
    });
  }
  const windowDefs = join(
    windows.map(
      ({ w, name }) =>
        sql`${id(name)} as (partition by ${ids(targetKeys)} order by ${id(target.eventTime)} range between ${kw(`interval '${durationInterval(w)}'`)} preceding and current row exclude current row)`,
    ),
    ', ',
  );
  const keep: Sql[] = [];
  if (run.start) keep.push(sql`${id(target.eventTime)} >= ${run.start}`);
  if (run.end) keep.push(sql`${id(target.eventTime)} < ${run.end}`);
  const keepWhere = keep.length ? sql`where ${join(keep, ' and ')}` : sql``;
  const rowBase = partitionRowRange(run.partition).rowStart;

  const result = (await raw(
    knex,
    sql`insert into ${id(stage)} (${ids(targetKeys)}, ${id(target.eventTime)}, ${ids(outputNames)}, _row_number)
        select ${ids(targetKeys)}, ${id(target.eventTime)}, ${ids(outputNames)}, ${int(rowBase)} + row_number() over (order by ${ids(targetKeys)}, ${id(target.eventTime)})
        from (
          select ${ids(targetKeys)}, ${id(target.eventTime)}, ${join(outputs, ', ')}
          from (
            select ${bucketKeys}, ${id(sourceTime)} as ${id(target.eventTime)}, ${join(bucketParts, ', ')}
            from (${snapshotSql(source, run.sourceCommitId)}) snapshot
            ${where}
            group by ${join(keyPairs.map(([, s]) => id(s)), ', ')}, ${id(sourceTime)}
          ) buckets
          window ${windowDefs}
        ) windowed
        ${keepWhere}`,
  )) as { rowCount: number | null };
  return result.rowCount ?? 0;
}
