/**
 * Commit order is visibility order. Commit ids are handed out when runs are planned,
 * but backfills and reruns commit in any order: a snapshot pinned by a commit must
 * hold exactly the commits that were visible when it became visible, whatever their
 * ids, and the newest correction (the last to become visible) must win in every
 * snapshot taken after it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFeatureGroup, type FeatureGroupDefinition } from '../features/definitions.ts';
import { defineFeatureView } from '../features/views.ts';
import { FeatureStore, type FeatureGroupRecord } from '../registry/feature-store/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import { stageRows, type Row } from './helpers/commits.ts';
import { createTestDb, uniqueId, type TestDb } from './helpers/services.ts';

const readings = defineFeatureGroup({
  name: 'readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', value: 'float' },
  source: { kind: 'ndjson', path: '/dev/null' },
});
const checks = defineFeatureGroup({
  name: 'checks',
  version: 1,
  entityKeys: ['check_id'],
  eventTime: 'at',
  features: { check_id: 'int', at: 'timestamp', sensor: 'string', ok: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'ok',
});
const view = defineFeatureView({ name: 'check_view', version: 1, spine: checks, label: 'ok', joins: [{ group: readings, on: { sensor: 'sensor' } }], features: ['readings.value'] });

const hour = (h: number, m = 0) => new Date(Date.UTC(2024, 0, 1, h, m));

describe('snapshots follow visibility order', () => {
  let db: TestDb;
  let store: FeatureStore;
  let readingsGroup: FeatureGroupRecord;
  let checksGroup: FeatureGroupRecord;

  /** Opens a commit attempt of `def` and stages `rows` in it (not visible yet). */
  const stage = (group: FeatureGroupRecord, def: FeatureGroupDefinition, rows: Row[]) => stageRows(store, group, def, rows);
  async function commit(group: FeatureGroupRecord, commitId: number): Promise<void> {
    const outcome = await store.commit(group, { expectations: [], validation: 'strict' }, commitId);
    expect(outcome.ok, JSON.stringify(outcome)).toBe(true);
  }
  const valuesAsOf = async (commitId?: number) =>
    (await store.read(readingsGroup, commitId === undefined ? {} : { asOfCommit: commitId }).toArray()).map((r) => `${r.sensor}@${(r.at as Date).toISOString().slice(11, 16)}=${r.value}`).sort();

  beforeAll(async () => {
    db = await createTestDb('snapshots');
    store = new FeatureStore({ knex: db.knex });
    readingsGroup = await store.register(readings);
    checksGroup = await store.register(checks);
  });

  afterAll(async () => {
    await db?.close();
  });

  it('windows committed 3, 1, 2 and corrections committed newest-id first: every snapshot is what was visible, the newest correction wins', async () => {
    // Three hourly windows, planned in order (ids w1 < w2 < w3), committed 3, 1, 2.
    const w1 = await stage(readingsGroup, readings, [{ sensor: 'a', at: hour(1), value: 1 }]);
    const w2 = await stage(readingsGroup, readings, [{ sensor: 'a', at: hour(2), value: 2 }]);
    const w3 = await stage(readingsGroup, readings, [{ sensor: 'a', at: hour(3), value: 3 }]);
    expect(w1 < w2 && w2 < w3).toBe(true);
    await commit(readingsGroup, w3);
    expect(await valuesAsOf(w3)).toEqual(['a@03:00=3']);
    await commit(readingsGroup, w1);
    await commit(readingsGroup, w2);
    // Pinned after window 3 only: windows 1 and 2 (lower ids, visible later) are not in it.
    expect(await valuesAsOf(w3)).toEqual(['a@03:00=3']);
    expect(await valuesAsOf(w1)).toEqual(['a@01:00=1', 'a@03:00=3']);
    expect(await valuesAsOf(w2)).toEqual(['a@01:00=1', 'a@02:00=2', 'a@03:00=3']);

    // Two reruns of window 1 correct the same row: the lower id (fixA) becomes visible last.
    const fixA = await stage(readingsGroup, readings, [{ sensor: 'a', at: hour(1), value: 10 }]);
    const fixB = await stage(readingsGroup, readings, [{ sensor: 'a', at: hour(1), value: 20 }]);
    expect(fixA < fixB).toBe(true);
    await commit(readingsGroup, fixB);
    await commit(readingsGroup, fixA);
    // As of fixB: its correction, not fixA's (which came later) and not the original.
    expect(await valuesAsOf(fixB)).toEqual(['a@01:00=20', 'a@02:00=2', 'a@03:00=3']);
    // As of fixA and now: the newest correction wins.
    expect(await valuesAsOf(fixA)).toEqual(['a@01:00=10', 'a@02:00=2', 'a@03:00=3']);
    expect(await valuesAsOf()).toEqual(['a@01:00=10', 'a@02:00=2', 'a@03:00=3']);
    // The earlier snapshots did not move.
    expect(await valuesAsOf(w3)).toEqual(['a@03:00=3']);
    expect(await valuesAsOf(w2)).toEqual(['a@01:00=1', 'a@02:00=2', 'a@03:00=3']);
    const latest = await store.latestCommit(readingsGroup);
    expect(latest?.id).toBe(fixA);
    expect(latest?.visibleSeq).toBeGreaterThan((await store.getCommit(fixB)).visibleSeq ?? Infinity);
  });

  it('a training dataset rebuilt later from its pinned commits is row-for-row identical, although lower-id commits became visible since', async () => {
    const spine = await stage(checksGroup, checks, [
      { check_id: 1, at: hour(5, 30), sensor: 'b', ok: true },
      { check_id: 2, at: hour(6, 30), sensor: 'b', ok: false },
      { check_id: 3, at: hour(7, 30), sensor: 'b', ok: true },
      { check_id: 4, at: hour(8, 30), sensor: 'b', ok: false },
    ]);
    await commit(checksGroup, spine);
    // Sensor b: a backfill of 05:00 and 07:00 planned first (lower id), the 06:00 window committed first.
    const backfill = await stage(readingsGroup, readings, [
      { sensor: 'b', at: hour(5), value: 50 },
      { sensor: 'b', at: hour(7), value: 70 },
    ]);
    const live = await stage(readingsGroup, readings, [{ sensor: 'b', at: hour(6), value: 60 }]);
    await commit(readingsGroup, live);

    const training = new TrainingStore({ knex: db.knex });
    const registered = await store.registerView(view);
    const dataset = await training.createDataset(registered, { idempotencyKey: uniqueId('ds'), start: hour(5), end: hour(9), validationStart: hour(7), testStart: hour(8) });
    const rowsOf = async (split: 'train' | 'validation' | 'test') => {
      const out: Array<Record<string, unknown>> = [];
      for await (const batch of training.streamSplit(dataset, split, ['check_id', 'at', 'ok', 'value'])) out.push(...batch);
      return out;
    };
    const pinned = [...(await rowsOf('train')), ...(await rowsOf('validation')), ...(await rowsOf('test'))].sort((a, b) => Number(a.check_id) - Number(b.check_id));
    // Only the 06:00 reading was visible: checks at 06:30, 07:30 and 08:30 see 60, the 05:30 one nothing.
    expect(pinned.map((r) => r.value)).toEqual([null, 60, 60, 60]);

    // The backfill (a lower id) becomes visible afterwards.
    await commit(readingsGroup, backfill);
    const snapshot = await store.pinnedSnapshot(view, dataset.commits);
    const rebuilt = (await store.viewRows(view, snapshot, { start: hour(5), end: hour(9) }).toArray()).sort((a, b) => Number(a.check_id) - Number(b.check_id));
    expect(rebuilt.map((r) => ({ check_id: r.check_id, at: r.at, ok: r.ok, value: r.value }))).toEqual(pinned.map((r) => ({ check_id: r.check_id, at: r.at, ok: r.ok, value: r.value })));
    // A snapshot taken now sees the backfill.
    const now = await store.viewRows(view, await store.latestSnapshot(view), { start: hour(5), end: hour(9) }).toArray();
    expect(now.sort((a, b) => Number(a.check_id) - Number(b.check_id)).map((r) => r.value)).toEqual([50, 60, 70, 70]);
  });
});
