/**
 * Windowed aggregates of a source group, computed in Postgres into a derived
 * group's commit table. Point-in-time: a row at event time t aggregates the source
 * events in [t - window, t), strictly before t.
 *
 * Source events are first collapsed to one bucket per (entity, event time), so
 * simultaneous events never see each other. Sums, counts and means over a window
 * are differences of running totals (linear time); minima and maxima use a RANGE
 * frame that excludes the current bucket (slower: each frame is re-aggregated).
 * Work can be split by entity hash into partitions that run as parallel activities
 * (each its own backend).
 */
import type { Knex } from 'knex';
import { aggregateFeatureName, type Aggregation } from '../../features/definitions.ts';
import { durationInterval, durationMs } from '../../core/duration.ts';
import { id, ids, int, join, kw, raw, sql, type Sql } from '../db/index.ts';
import { visibleCommits } from './commits.ts';
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
    bucketParts.push(sql`coalesce(sum(${x}), 0)::double precision as ${id(`_s${i}`)}`, sql`count(${x})::bigint as ${id(`_c${i}`)}`);
    if (m.fn === 'min' || m.fn === 'max') bucketParts.push(sql`min(${x}) as ${id(`_l${i}`)}`, sql`max(${x}) as ${id(`_h${i}`)}`);
  });
  const targetKeys = keyPairs.map(([k]) => k);
  const bucketKeys = join(keyPairs.map(([k, s]) => sql`${id(s)}::text as ${id(k)}`), ', ');
  const t = id(target.eventTime);
  const partition = sql`partition by ${ids(targetKeys)} order by ${t}`;

  // Sums and counts over [t - w, t) as differences of running totals: the total of
  // all earlier buckets minus the total of buckets before t - w (the last running
  // total in a RANGE frame ending just before t - w). O(n) per window, where a
  // sliding frame that excludes the current row would re-aggregate every frame.
  const running: Sql[] = [sql`sum(_n) over _all as _rn`];
  aggregation.metrics.forEach((m, i) => {
    if (m.column) running.push(sql`sum(${id(`_s${i}`)}) over _all as ${id(`_rs${i}`)}`, sql`sum(${id(`_c${i}`)}) over _all as ${id(`_rc${i}`)}`);
  });
  const windows = aggregation.windows.map((w, wi) => ({ w, lo: `_lo${wi}`, frame: `_fr${wi}` }));
  const extremes: Sql[] = [];
  const outputs: Sql[] = [];
  const outputNames: string[] = [];
  for (const { w, lo, frame } of windows) {
    const inWindow = (runningColumn: string, bucketColumn: string) =>
      sql`(${id(runningColumn)} - ${id(bucketColumn)} - coalesce(last_value(${id(runningColumn)}) over ${id(lo)}, 0))`;
    aggregation.metrics.forEach((m, i) => {
      const column = aggregateFeatureName(m.name, w);
      const count = m.column ? inWindow(`_rc${i}`, `_c${i}`) : inWindow('_rn', '_n');
      let value: Sql;
      if (m.fn === 'count') value = sql`${count}::bigint`;
      else if (m.fn === 'avg') value = sql`(${inWindow(`_rs${i}`, `_s${i}`)} / nullif(${count}, 0))::double precision`;
      else if (m.fn === 'sum') value = sql`(case when ${count} > 0 then ${inWindow(`_rs${i}`, `_s${i}`)} end)::double precision`;
      else {
        // Minima and maxima have no running form: a frame that excludes the current bucket.
        const fn = m.fn === 'min' ? sql`min(${id(`_l${i}`)})` : sql`max(${id(`_h${i}`)})`;
        extremes.push(sql`${fn} over ${id(frame)} as ${id(`_x${i}_${column}`)}`);
        value = sql`(${id(`_x${i}_${column}`)})::double precision`;
      }
      outputs.push(sql`${value} as ${id(column)}`);
      outputNames.push(column);
    });
  }
  const lowWindows = join(
    windows.map(({ w, lo }) => sql`${id(lo)} as (${partition} range between unbounded preceding and ${kw(`interval '${durationInterval(w)} 0.000001 seconds'`)} preceding)`),
    ', ',
  );
  const frameWindows = join(
    [sql`_all as (${partition} rows unbounded preceding)`, ...windows.map(({ w, frame }) => sql`${id(frame)} as (${partition} range between ${kw(`interval '${durationInterval(w)}'`)} preceding and current row exclude current row)`)],
    ', ',
  );
  const keep: Sql[] = [];
  if (run.start) keep.push(sql`${t} >= ${run.start}`);
  if (run.end) keep.push(sql`${t} < ${run.end}`);
  const keepWhere = keep.length ? sql`where ${join(keep, ' and ')}` : sql``;
  const rowBase = partitionRowRange(run.partition).rowStart;

  const result = (await raw(
    knex,
    // An aggregate row is known at its own time: it is computed from what came before it.
    sql`insert into ${id(stage)} (${ids(targetKeys)}, ${t}, ${ids(outputNames)}, _row_number, _available_at)
        select ${ids(targetKeys)}, ${t}, ${ids(outputNames)}, ${int(rowBase)} + row_number() over (order by ${ids(targetKeys)}, ${t}), ${t}
        from (
          select ${ids(targetKeys)}, ${t}, ${join(outputs, ', ')}
          from (
            select buckets.*, ${join([...running, ...extremes], ', ')}
            from (
              select ${bucketKeys}, ${id(sourceTime)} as ${t}, ${join(bucketParts, ', ')}
              from (${snapshotSql(source, await visibleCommits(knex, run.sourceCommitId))}) snapshot
              ${where}
              group by ${join(keyPairs.map(([, s]) => id(s)), ', ')}, ${id(sourceTime)}
            ) buckets
            window ${frameWindows}
          ) totals
          window ${lowWindows}
        ) windowed
        ${keepWhere}`,
  )) as { rowCount: number | null };
  return result.rowCount ?? 0;
}
