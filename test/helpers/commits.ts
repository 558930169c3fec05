/** Feature group commits written as ingest writes them, for tests that build their own rows. */
import { expect } from 'vitest';
import type { FeatureGroupDefinition } from '../../features/definitions.ts';
import type { FeatureValue } from '../../features/schema.ts';
import { stagedCopy } from '../../features/staged-rows.ts';
import type { FeatureGroupRecord, FeatureStore } from '../../registry/feature-store/index.ts';
import { uniqueId } from './services.ts';

export type Row = Record<string, FeatureValue>;

/**
 * Opens a commit attempt of `def` and stages `rows` in it (not visible yet), each as
 * ingest copies it: the features, its row number, and when it became known (here: its
 * event time). Returns the attempt's commit id.
 */
export async function stageRows(store: FeatureStore, group: FeatureGroupRecord, def: FeatureGroupDefinition, rows: readonly Row[]): Promise<number> {
  const attempt = await store.beginCommit(group, { idempotencyKey: uniqueId('attempt') });
  await store.copyRows(group, attempt.id, stagedCopy(def.columns, rows.map((row, i) => ({ values: def.columns.map((c) => row[c.name] ?? null), rowNumber: i, availableAt: row[def.eventTime] as Date }))));
  return attempt.id;
}

/** Stages `rows` (stageRows) and commits them, strictly validated; returns the commit's id. */
export async function commitRows(store: FeatureStore, group: FeatureGroupRecord, def: FeatureGroupDefinition, rows: readonly Row[]): Promise<number> {
  const commitId = await stageRows(store, group, def, rows);
  const outcome = await store.commit(group, { expectations: [], validation: 'strict' }, commitId);
  expect(outcome.ok, JSON.stringify(outcome)).toBe(true);
  return commitId;
}
