/** Reading a feature view's rows in tests. */
import { expect } from 'vitest';
import type { FeatureViewDefinition } from '../../features/views.ts';
import type { FeatureRecord, FeatureStore, PitStrategy } from '../../registry/feature-store/index.ts';

/**
 * The view's rows (latest snapshot) by each point-in-time plan, as `pick` shapes them;
 * the per-row plan must agree with the set-based one.
 */
export async function viewRowsByBothPlans<T>(store: FeatureStore, view: FeatureViewDefinition, pick: (rows: FeatureRecord[]) => T): Promise<T> {
  const results: T[] = [];
  for (const strategy of ['window', 'lateral'] as PitStrategy[]) {
    results.push(pick(await store.viewRows(view, await store.latestSnapshot(view), { strategy }).toArray()));
  }
  expect(results[1], 'the per-row plan agrees with the set-based one').toEqual(results[0]);
  return results[0] as T;
}
