/** Reading a feature view's rows in tests. */
import { expect } from 'vitest';
import type { FeatureViewDefinition } from '../../features/views.ts';
import type { FeatureRecord, FeatureStore, PitStrategy } from '../../registry/feature-store/index.ts';

const PLANS: PitStrategy[] = ['window', 'lateral'];

/**
 * The view's rows (latest snapshot) by each point-in-time plan, as `pick` shapes them;
 * the per-row plan must agree with the set-based one. Reads from a later start must
 * give exactly the whole read's rows from that start on, by both plans: a windowed
 * read joins older rows through each key's newest one (point-in-time.ts, "settled"),
 * and this checks it at every spine time.
 */
export async function viewRowsByBothPlans<T>(store: FeatureStore, view: FeatureViewDefinition, pick: (rows: FeatureRecord[]) => T): Promise<T> {
  const snapshot = await store.latestSnapshot(view);
  const rowsBy = async (strategy: PitStrategy, start?: Date) => store.viewRows(view, snapshot, { strategy, ...(start ? { start } : {}) }).toArray();
  const all = await rowsBy('window');
  expect(pick(await rowsBy('lateral')), 'the per-row plan agrees with the set-based one').toEqual(pick(all));

  const et = snapshot.spine.eventTime;
  const timeOf = (r: FeatureRecord) => (r[et] as Date).getTime();
  const canonical = (rows: FeatureRecord[]) => rows.map((r) => JSON.stringify(r)).sort();
  for (const t of [...new Set(all.map(timeOf))].sort((a, b) => a - b)) {
    const expected = canonical(all.filter((r) => timeOf(r) >= t));
    for (const strategy of PLANS) {
      expect(canonical(await rowsBy(strategy, new Date(t))), `${strategy} rows from ${new Date(t).toISOString()} on`).toEqual(expected);
    }
  }
  return pick(all);
}
