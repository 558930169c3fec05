/**
 * Windowed aggregates of a source group, computed in Postgres into a derived
 * group's commit table. Point-in-time on knowledge time: a row at time t aggregates
 * the source events with an event time in [t - window, t) that were known
 * (`_available_at`) at or before t — a flight's delay counts from when the flight
 * left, not from its scheduled time.
 *
 * One pass per partition: every source event enters a stream at the time it became
 * known and leaves it, per window, when it falls out of the window (its event time
 * plus the window); the derived rows are evaluation points in the same stream, and
 * running sums over it ordered by time are the windowed sums and counts (linear
 * after one sort). At equal instants an event known only then enters before the
 * evaluation (known at or before t), an event known at its own time after it
 * (strictly before t), and an exit after it (t - window is inside the window).
 * Minima and maxima have no running form: each evaluation point looks them up.
 * Work can be split by entity hash into partitions that run as parallel activities
 * (each its own backend).
 */
import type { Knex } from 'knex';
import { aggregateFeatureName, type Aggregation } from '../../features/definitions.ts';
import { durationInterval, durationMs } from '../../core/duration.ts';
import { id, ids, int, join, kw, raw, sql, type Sql } from '../db/index.ts';
import { visibleCommits } from './commits.ts';
import { snapshotSql } from './reads.ts';
import { ensureAvailableAt, groupTables, type GroupShape } from './tables.ts';

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
  const targetKeys = keyPairs.map(([k]) => k);
  const t = id(target.eventTime);
  await ensureAvailableAt(knex, source);

  // src: the source snapshot within [start - longest window, end), keys renamed, metric inputs as numbers.
  const filters: Sql[] = [];
  if (run.start) filters.push(sql`${id(sourceTime)} >= ${new Date(run.start.getTime() - longest)}`);
  if (run.end) filters.push(sql`${id(sourceTime)} < ${run.end}`);
  if (run.partitions > 1) {
    const hashInput = join(keyPairs.map(([, s]) => sql`${id(s)}::text`), ` || '|' || `);
    filters.push(sql`(hashtext(${hashInput}) & 2147483647) % ${int(run.partitions)} = ${int(run.partition)}`);
  }
  const where = filters.length ? sql`where ${join(filters, ' and ')}` : sql``;
  const inputs = aggregation.metrics.flatMap((m, i) => (m.column ? [{ i, x: sourceTypes[m.column] === 'bool' ? sql`(${id(m.column)})::int::double precision` : sql`(${id(m.column)})::double precision` }] : []));
  const src = sql`select ${join(keyPairs.map(([k, s]) => sql`${id(s)}::text as ${id(k)}`), ', ')}, ${id(sourceTime)} as _te, _available_at as _ta
                  ${join(inputs.map(({ i, x }) => sql`, ${x} as ${id(`_x${i}`)}`), '')}
                  from (${snapshotSql(source, await visibleCommits(knex, run.sourceCommitId))}) snapshot ${where}`;

  // Per window w: the row count, and per metric input the sum and count of non-null values.
  const windows = aggregation.windows.map((w, wi) => ({ w, wi, interval: kw(`interval '${durationInterval(w)}'`) }));
  const sumColumns = windows.flatMap(({ wi }) => [`_n${wi}`, ...inputs.flatMap(({ i }) => [`_s${wi}_${i}`, `_c${wi}_${i}`])]);
  // An event enters window w only if it is known before it has fallen out of w.
  const entersWindow = (interval: Sql) => sql`_ta <= _te + ${interval}`;
  /** One event's row count, sums and counts in every window's columns: `value` of each, or 0 where `counts(window)` is false. */
  const columnsOf = (counts: (window: (typeof windows)[number]) => Sql | undefined, sign: 1 | -1): Sql[] =>
    windows.flatMap((window) => {
      const when = counts(window);
      const value = (v: Sql) => (when ? sql`case when ${when} then ${int(sign)} * ${v} else 0 end` : sql`0`);
      return [sql`${value(sql`1`)} as ${id(`_n${window.wi}`)}`, ...inputs.flatMap(({ i }) => [sql`${value(sql`coalesce(${id(`_x${i}`)}, 0)`)} as ${id(`_s${window.wi}_${i}`)}`, sql`${value(sql`(${id(`_x${i}`)} is not null)::int`)} as ${id(`_c${window.wi}_${i}`)}`])];
    });
  const zeros = sumColumns.map((c) => sql`0 as ${id(c)}`);
  const keyCols = ids(targetKeys);
  const evalFilters: Sql[] = [];
  if (run.start) evalFilters.push(sql`_te >= ${run.start}`);
  if (run.end) evalFilters.push(sql`_te < ${run.end}`);
  const evalWhere = evalFilters.length ? sql`where ${join(evalFilters, ' and ')}` : sql``;
  const stream = join(
    [
      // Evaluation points: one derived row per (entity, source event time) of the run's window.
      sql`select distinct ${keyCols}, _te as _t, 0 as _k, ${join(zeros, ', ')} from src ${evalWhere}`,
      // Entries: when known; before evaluations at that instant if known later than it happened.
      sql`select ${keyCols}, greatest(_te, _ta) as _t, case when _ta > _te then -1 else 1 end as _k, ${join(columnsOf((window) => entersWindow(window.interval), 1), ', ')} from src`,
      // Exits: when the event falls out of window w (only for events that entered it).
      ...windows.map(({ wi, interval }) => sql`select ${keyCols}, _te + ${interval} as _t, 2 as _k, ${join(columnsOf((window) => (window.wi === wi ? sql`true` : undefined), -1), ', ')} from src where ${entersWindow(interval)}`),
    ],
    ' union all ',
  );
  const running = sumColumns.map((c) => sql`sum(${id(c)}) over w as ${id(c)}`);

  const outputs: Sql[] = [];
  const outputNames: string[] = [];
  for (const { w, wi, interval } of windows) {
    aggregation.metrics.forEach((m, i) => {
      const column = aggregateFeatureName(m.name, w);
      const count = m.column ? id(`_c${wi}_${i}`) : id(`_n${wi}`);
      let value: Sql;
      if (m.fn === 'count') value = sql`${count}::bigint`;
      else if (m.fn === 'avg') value = sql`(${id(`_s${wi}_${i}`)} / nullif(${count}, 0))::double precision`;
      else if (m.fn === 'sum') value = sql`(case when ${count} > 0 then ${id(`_s${wi}_${i}`)} end)::double precision`;
      else {
        // Minima and maxima have no running form: one look-up per evaluation point.
        const fn = m.fn === 'min' ? kw('min') : kw('max');
        const match = join(targetKeys.map((k) => sql`e.${id(k)} = r.${id(k)}`), ' and ');
        value = sql`(select ${fn}(e.${id(`_x${i}`)}) from src e where ${match} and e._te >= r._t - ${interval} and e._te < r._t and e._ta <= r._t)::double precision`;
      }
      outputs.push(sql`${value} as ${id(column)}`);
      outputNames.push(column);
    });
  }
  const rowBase = partitionRowRange(run.partition).rowStart;

  const result = (await raw(
    knex,
    // An aggregate row is known at its own time: it is computed from what was known then.
    sql`with src as materialized (${src})
        insert into ${id(stage)} (${keyCols}, ${t}, ${ids(outputNames)}, _row_number, _available_at)
        select ${keyCols}, _t, ${ids(outputNames)}, ${int(rowBase)} + row_number() over (order by ${keyCols}, _t), _t
        from (
          select ${keyCols}, r._t, ${join(outputs, ', ')}
          from (
            select ${keyCols}, _t, _k, ${join(running, ', ')}
            from (${stream}) events
            window w as (partition by ${keyCols} order by _t, _k rows unbounded preceding)
          ) r
          where _k = 0
        ) windowed`,
  )) as { rowCount: number | null };
  return result.rowCount ?? 0;
}
