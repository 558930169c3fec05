/**
 * Windowed aggregates of a source group, computed in Postgres into a derived
 * group's commit table, exact at any time. Point-in-time on knowledge time: the
 * value at time t aggregates the source events with an event time in [t - window, t)
 * that were known (`_available_at`) at or before t — a flight's delay counts from
 * when the flight left, not from its scheduled time.
 *
 * The rows are the windows' change points: a row at time c holds the value for every
 * t after c up to the next row (a step function, one per entity). A source event
 * changes it twice per window: it enters when it is known (counting for t > its event
 * time if known by then, for t >= its available-at time otherwise — stored one
 * microsecond earlier, Postgres' resolution, so that every row means "from just after
 * c") and it leaves when it falls out of the window (for t > event time + window). So
 * the point-in-time join's "latest row strictly before t" gives the exact window at
 * any t — a spine row between two source events included — and the online store
 * answers at request time with the same rule.
 *
 * One pass per partition: the entries and exits of every event, summed per (entity,
 * instant), then running sums ordered by time (linear after one sort). Minima and
 * maxima have no running form: each change point looks them up. Work can be split by
 * entity hash into partitions that run as parallel activities (each its own backend).
 *
 * A run over [start, end) writes the change points in [start, end): exact, because
 * everything that happened before end was read. Points at or after end (events of the
 * window leaving it later) are written too, as the online store's known future: the
 * commit keeps them out of the offline history (a later window's run recomputes them
 * with its own events).
 */
import type { Knex } from 'knex';
import { aggregateFeatureName, longestWindowMs, type Aggregation } from '../../features/definitions.ts';
import { durationInterval } from '../../core/duration.ts';
import { id, ids, int, join, kw, raw, sql, type Sql } from '../db/index.ts';
import { snapshotPin } from './commits.ts';
import { snapshotSql } from './reads.ts';
import { upgradeGroupTables, groupTables, type GroupShape } from './tables.ts';

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

/** One microsecond: Postgres timestamps' resolution ("at or after a" is "after a - 1µs"). */
const MICROSECOND = kw(`interval '1 microsecond'`);

export async function computeAggregates(knex: Knex, run: AggregateRun): Promise<number> {
  const { target, aggregation, source } = run;
  const stage = groupTables(target.name, target.version).commit(run.commitId);
  const sourceTime = source.eventTime;
  const keyPairs = Object.entries(aggregation.groupBy); // [targetKey, sourceColumn]
  const sourceTypes = Object.fromEntries(source.columns.map((c) => [c.name, c.type]));
  const longest = longestWindowMs(aggregation);
  const targetKeys = keyPairs.map(([k]) => k);
  const t = id(target.eventTime);
  await upgradeGroupTables(knex, source);

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
                  from (${snapshotSql(source, await snapshotPin(knex, run.sourceCommitId))}) snapshot ${where}`;

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
  const keyCols = ids(targetKeys);
  // The instant after which an event counts: its event time if known by then, else just before it became known.
  const entersAt = sql`case when _ta > _te then _ta - ${MICROSECOND} else _te end`;
  const changes = join(
    [
      sql`select ${keyCols}, ${entersAt} as _t, ${join(columnsOf((window) => entersWindow(window.interval), 1), ', ')} from src`,
      // Exits: after the event falls out of window w (only for events that entered it).
      ...windows.map(({ wi, interval }) => sql`select ${keyCols}, _te + ${interval} as _t, ${join(columnsOf((window) => (window.wi === wi ? sql`true` : undefined), -1), ', ')} from src where ${entersWindow(interval)}`),
    ],
    ' union all ',
  );
  // Changes summed per (entity, instant), then running sums: the state just after each instant.
  const running = sumColumns.map((c) => sql`sum(sum(${id(c)})) over w as ${id(c)}`);

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
        // Minima and maxima have no running form: one look-up per change point, over
        // the events counted for t just after it (event time in (c - w, c], known by then).
        const fn = m.fn === 'min' ? kw('min') : kw('max');
        const match = join(targetKeys.map((k) => sql`e.${id(k)} = r.${id(k)}`), ' and ');
        value = sql`(select ${fn}(e.${id(`_x${i}`)}) from src e where ${match} and e._te > r._t - ${interval} and e._te <= r._t
                     and e._ta - ${MICROSECOND} <= r._t and ${entersWindow(interval)})::double precision`;
      }
      outputs.push(sql`${value} as ${id(column)}`);
      outputNames.push(column);
    });
  }
  const rowBase = partitionRowRange(run.partition).rowStart;
  const from = run.start ? sql`where r._t >= ${run.start}` : sql``;

  const result = (await raw(
    knex,
    // A change point is known at its own time: it is computed from what was known then.
    sql`with src as materialized (${src})
        insert into ${id(stage)} (${keyCols}, ${t}, ${ids(outputNames)}, _row_number, _available_at)
        select ${keyCols}, _t, ${ids(outputNames)}, ${int(rowBase)} + row_number() over (order by ${keyCols}, _t), _t
        from (
          select ${keyCols}, r._t, ${join(outputs, ', ')}
          from (
            select ${keyCols}, _t, ${join(running, ', ')}
            from (${changes}) changes
            group by ${keyCols}, _t
            window w as (partition by ${keyCols} order by _t rows unbounded preceding)
          ) r
          ${from}
        ) windowed`,
  )) as { rowCount: number | null };
  return result.rowCount ?? 0;
}
