/** Reading a feature view's rows in tests. */
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import { expect } from 'vitest';
import { id, raw, sql } from '../../registry/db/index.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import { pointInTimeRows, pointInTimeSql, streamPointInTime, viewQuery, type FeatureRecord, type FeatureStore, type PitPlan, type PitStrategy, type ViewSnapshot } from '../../registry/feature-store/index.ts';

const PLANS: PitStrategy[] = ['window', 'lateral'];

/**
 * The view's rows by the stream plan (pit-stream.ts, what training datasets use),
 * written into a temporary table and read back.
 */
export async function streamedViewRows(knex: Knex, view: FeatureViewDefinition, snapshot: ViewSnapshot, start?: Date): Promise<FeatureRecord[]> {
  const q = viewQuery(view, snapshot, { ...(start ? { start } : {}), withLabel: true, strategy: 'window' });
  const table = `pit_stream_${crypto.randomBytes(4).toString('hex')}`;
  return knex.transaction(async (trx) => {
    await raw(trx, sql`create temporary table ${id(table)} on commit drop as ${pointInTimeSql(q)} with no data`);
    await streamPointInTime(knex, q, [{ index: 0, writer: trx, table, extra: [] }], { count: 1 });
    return (await trx.raw('select * from ??', [table])).rows as FeatureRecord[];
  });
}

/** The view's rows by the stream plan decoded in Node (pit-stream.ts' pointInTimeRows, what batch inference reads). */
export async function streamedRowsDecoded(knex: Knex, view: FeatureViewDefinition, snapshot: ViewSnapshot, start?: Date): Promise<FeatureRecord[]> {
  const q = viewQuery(view, snapshot, { ...(start ? { start } : {}), withLabel: true, strategy: 'window' });
  const rows: FeatureRecord[] = [];
  // Small batches, so that a view's rows span several.
  for await (const batch of pointInTimeRows(knex, q, { batchSize: 7 })) rows.push(...(batch as FeatureRecord[]));
  return rows;
}

type Plan = PitPlan | 'stream rows';

/**
 * The view's rows (latest snapshot) by each point-in-time plan, as `pick` shapes them;
 * the per-row plan and the stream plan must agree with the set-based one. Reads from
 * a later start must give exactly the whole read's rows from that start on, by every
 * plan: a windowed read joins older rows through each key's newest one
 * (point-in-time.ts, "settled"), and this checks it at every spine time.
 */
export async function viewRowsByBothPlans<T>(knex: Knex, store: FeatureStore, view: FeatureViewDefinition, pick: (rows: FeatureRecord[]) => T): Promise<T> {
  const snapshot = await store.latestSnapshot(view);
  const rowsBy = async (strategy: Plan, start?: Date) =>
    strategy === 'stream'
      ? streamedViewRows(knex, view, snapshot, start)
      : strategy === 'stream rows'
        ? streamedRowsDecoded(knex, view, snapshot, start)
        : store.viewRows(view, snapshot, { strategy, ...(start ? { start } : {}) }).toArray();
  const all = await rowsBy('window');
  expect(pick(await rowsBy('lateral')), 'the per-row plan agrees with the set-based one').toEqual(pick(all));
  expect(pick(await rowsBy('stream')), 'the stream plan agrees with the set-based one').toEqual(pick(all));
  expect(pick(await rowsBy('stream rows')), 'the stream plan, decoded in Node, agrees with the set-based one').toEqual(pick(all));

  const et = snapshot.spine.eventTime;
  const timeOf = (r: FeatureRecord) => (r[et] as Date).getTime();
  const canonical = (rows: FeatureRecord[]) => rows.map((r) => JSON.stringify(r)).sort();
  for (const t of [...new Set(all.map(timeOf))].sort((a, b) => a - b)) {
    const expected = canonical(all.filter((r) => timeOf(r) >= t));
    for (const strategy of [...PLANS, 'stream' as const, 'stream rows' as const]) {
      expect(canonical(await rowsBy(strategy, new Date(t))), `${strategy} rows from ${new Date(t).toISOString()} on`).toEqual(expected);
    }
  }
  return pick(all);
}
