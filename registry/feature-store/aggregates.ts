/**
 * Windowed aggregates of a source group, computed into a derived group's commit
 * table, exact at any time. Point-in-time on knowledge time: the
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
 * One pass per partition: Postgres reads the partition's source rows in key and time
 * order (binary COPY), the worker walks each entity's entries and exits in time order
 * with running sums (window-changes.ts; minima and maxima from a heap of the events
 * in the window), and the change points go back by binary COPY on the same
 * transaction. This was one SQL statement (a union of entries and exits, grouped per
 * instant, two window functions); Postgres spent ~75 s of CPU on a partition of the
 * flights example that takes ~15 s this way, with the same rows, row numbers and bits
 * (the deltas of an instant are summed before the running sum, as the statement did).
 * The partition's source rows are held while its change points are written (about
 * 60 bytes an event): more partitions bound it. Work can be split by entity hash into
 * partitions that run as parallel activities (each its own backend).
 *
 * A run over [start, end) writes the change points in [start, end): exact, because
 * everything that happened before end was read. Points at or after end (events of the
 * window leaving it later) are written too, as the online store's known future: the
 * commit keeps them out of the offline history (a later window's run recomputes them
 * with its own events).
 */
import type { Knex } from 'knex';
import type pg from 'pg';
import { aggregateFeatureName, longestWindowMs, type Aggregation } from '../../features/definitions.ts';
import { durationMs } from '../../core/duration.ts';
import { BinaryCopyWriter, binaryCopyOut, copyIn, fieldBytes, fieldEquals, float8Field, id, ids, int, join, sql, timestampField, toInlined, toText, type ChunkSource, type Sql } from '../db/index.ts';
import { entityChangePoints, type EntityEvents, type WindowOutput, type WindowPlan } from './window-changes.ts';
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

export async function computeAggregates(knex: Knex, run: AggregateRun, signal?: AbortSignal): Promise<number> {
  const { target, aggregation, source } = run;
  const stage = groupTables(target.name, target.version).commit(run.commitId);
  const sourceTime = source.eventTime;
  const keyPairs = Object.entries(aggregation.groupBy); // [targetKey, sourceColumn]
  const sourceTypes = Object.fromEntries(source.columns.map((c) => [c.name, c.type]));
  const longest = longestWindowMs(aggregation);
  const targetKeys = keyPairs.map(([k]) => k);
  await upgradeGroupTables(knex, source);

  // The source snapshot within [start - longest window, end), keys as text, metric inputs as numbers,
  // in key order (the database's, which numbers the rows) and event-time order within a key.
  const filters: Sql[] = [];
  if (run.start) filters.push(sql`${id(sourceTime)} >= ${new Date(run.start.getTime() - longest)}`);
  if (run.end) filters.push(sql`${id(sourceTime)} < ${run.end}`);
  if (run.partitions > 1) {
    const hashInput = join(keyPairs.map(([, s]) => sql`${id(s)}::text`), ` || '|' || `);
    filters.push(sql`(hashtext(${hashInput}) & 2147483647) % ${int(run.partitions)} = ${int(run.partition)}`);
  }
  const where = filters.length ? sql`where ${join(filters, ' and ')}` : sql``;
  const inputColumns = [...new Set(aggregation.metrics.flatMap((m) => (m.column ? [m.column] : [])))];
  const input = (c: string) => (sourceTypes[c] === 'bool' ? sql`(${id(c)})::int::double precision` : sql`(${id(c)})::double precision`);
  const keys = keyPairs.map(([, s], ki) => sql`${id(s)}::text as ${id(`_k${ki}`)}`);
  const src = sql`select ${join(keys, ', ')}, ${id(sourceTime)} as _te, _available_at as _ta ${join(inputColumns.map((c) => sql`, ${input(c)}`), '')}
                  from (${snapshotSql(source, await snapshotPin(knex, run.sourceCommitId))}) snapshot ${where}
                  order by ${join(keyPairs.map((_, ki) => id(`_k${ki}`)), ', ')}, _te`;

  const plan: WindowPlan = {
    windows: aggregation.windows.map((w) => durationMs(w) * 1000),
    inputs: inputColumns.length,
    outputs: aggregation.windows.flatMap((_, window) =>
      aggregation.metrics.map((m): WindowOutput => (m.column === undefined ? { fn: 'count', window } : { fn: m.fn, window, input: inputColumns.indexOf(m.column) })),
    ),
  };
  const outputNames = aggregation.windows.flatMap((w) => aggregation.metrics.map((m) => aggregateFeatureName(m.name, w)));
  const counts = plan.outputs.map((o) => o.fn === 'count');

  const client = (await knex.client.acquireConnection()) as pg.PoolClient;
  try {
    // The sort of the source rows in memory (one partition's: a few hundred MB at most).
    await client.query(`select set_config('work_mem', '256MB', true)`);
    const entities = await readEntities(client, toInlined(knex, src), keyPairs.length, inputColumns.length);
    signal?.throwIfAborted();
    const from = run.start ? run.start.getTime() * 1000 : -Infinity;
    const rowBase = partitionRowRange(run.partition).rowStart;
    let written = 0;
    // A change point is known at its own time: it is computed from what was known then.
    async function* rows(chunks: ChunkSource): AsyncGenerator<Buffer> {
      const out = new BinaryCopyWriter(undefined, chunks);
      const fields = targetKeys.length + outputNames.length + 3;
      for (const entity of entities) {
        entityChangePoints(entity.events, plan, from, (at, values, nulls) => {
          out.tuple(fields);
          for (const key of entity.keys) {
            if (key === null) out.nullField();
            else out.bytesField(key);
          }
          out.timestamptz(at);
          for (let oi = 0; oi < values.length; oi++) {
            if (nulls[oi] === 1) out.nullField();
            else if (counts[oi]) out.int8(values[oi] as number);
            else out.float8(values[oi] as number);
          }
          written++;
          out.int8(rowBase + written);
          out.timestamptz(at);
        });
        yield* out.take();
      }
      yield* out.end();
    }
    const columns = [...targetKeys, target.eventTime, ...outputNames, '_row_number', '_available_at'];
    await copyIn(client, toText(knex, sql`copy ${id(stage)} (${ids(columns)}) from stdin (format binary)`), rows, signal);
    return written;
  } finally {
    await knex.client.releaseConnection(client);
  }
}

/** One entity's key (each column's UTF-8, null for a null key) and its events. */
interface Entity {
  keys: Array<Buffer | null>;
  events: EntityEvents;
}

/** Reads the source rows (keys, event time, known-at time, inputs; in key order) by binary COPY into one Entity per key. */
async function readEntities(client: pg.PoolClient, query: string, keyCount: number, inputCount: number): Promise<Entity[]> {
  const entities: Entity[] = [];
  let current: Entity | undefined;
  await binaryCopyOut(client, `copy (${query}) to stdout (format binary)`, (t) => {
    let same = current !== undefined;
    for (let k = 0; k < keyCount && same; k++) same = fieldEquals(t, k, current?.keys[k]);
    if (!same) {
      current = { keys: Array.from({ length: keyCount }, (_, k) => fieldBytes(t, k)), events: { eventTime: [], knownAt: [], inputs: Array.from({ length: inputCount }, () => []), present: Array.from({ length: inputCount }, () => []) } };
      entities.push(current);
    }
    const { events } = current as Entity;
    const eventTime = timestampField(t, keyCount) as number;
    events.eventTime.push(eventTime);
    events.knownAt.push(timestampField(t, keyCount + 1) ?? eventTime);
    for (let i = 0; i < inputCount; i++) {
      const x = float8Field(t, keyCount + 2 + i);
      (events.inputs[i] as number[]).push(x ?? 0);
      (events.present[i] as number[]).push(x === null ? 0 : 1);
    }
  });
  return entities;
}
