/**
 * Training rows hold only what was known. A joined row counts for a spine row at t
 * when its event time is before t AND it was known (available) at or before t:
 * its event time plus the group's declared lag, or, for a row that arrived for a
 * window already committed, the time its commit became visible. Both join plans
 * (set-based and per-row) agree; `pointInTime: 'event_time'` gives corrected
 * history; a ttl drops rows that are too old. (Aggregates: exact-windows.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { defineFeatureView, type FeatureViewDefinition } from '../features/views.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { featurePipeline } from '../workflows/index.ts';
import { scratchFiles } from './helpers/files.ts';
import { viewRowsByBothPlans } from './helpers/views.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const { dir, ndjson } = scratchFiles('knowledge');

// Scores are produced by an hourly job: a score for 10:00 is known at 11:00.
const scores = defineFeatureGroup({
  name: 'scores',
  version: 1,
  entityKeys: ['user_id'],
  eventTime: 'at',
  features: { user_id: 'string', at: 'timestamp', score: 'float' },
  source: { kind: 'ndjson', path: '/dev/null' },
  availability: { lag: '1h' },
  online: true,
});
const events = defineFeatureGroup({
  name: 'events',
  version: 1,
  entityKeys: ['event_id'],
  eventTime: 'at',
  features: { event_id: 'int', at: 'timestamp', user_id: 'string', fraud: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'fraud',
});
const known = defineFeatureView({ name: 'fraud', version: 1, spine: events, label: 'fraud', joins: [{ group: scores, on: { user_id: 'user_id' } }], features: ['scores.score'] });
const corrected = defineFeatureView({ name: 'fraud', version: 2, spine: events, label: 'fraud', joins: [{ group: scores, on: { user_id: 'user_id' } }], features: ['scores.score'], pointInTime: 'event_time' });
const fresh = defineFeatureView({ name: 'fraud', version: 3, spine: events, label: 'fraud', joins: [{ group: scores, on: { user_id: 'user_id' }, ttl: '2h' }], features: ['scores.score'] });
const project = defineProject({ featureGroups: [scores, events], featureViews: [known, corrected, fresh] });

const at = (h: number, m = 0, s = 0) => new Date(Date.UTC(2024, 0, 1, h, m, s)).toISOString();

describe('point-in-time joins on what was known', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let store: FeatureStore;

  const run = (featureGroup: string, file: string, window: { start: string; end: string }) =>
    temporal.client.workflow.execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('fp'), args: [{ featureGroup, source: { kind: 'ndjson', path: file }, ...window }] });
  /** event_id -> score joined, with each plan; both must agree. */
  const joined = (view: FeatureViewDefinition): Promise<Record<number, unknown>> => viewRowsByBothPlans(db.knex, store, view, (rows) => Object.fromEntries(rows.map((r) => [Number(r.event_id), r.score])));

  beforeAll(async () => {
    db = await createTestDb('knowledge');
    temporal = await createTestTemporal('knowledge');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [dir] });
    store = new FeatureStore({ knex: db.knex });
    for (const view of [known, corrected, fresh]) await store.registerView(view);
    // A first backfill of the day: scores at 10:00 (known 11:00) and 12:00 (known 13:00).
    await run('scores', ndjson('scores.ndjson', [
      { user_id: 'u1', at: at(10), score: 1 },
      { user_id: 'u1', at: at(12), score: 2 },
    ]), { start: at(0), end: at(24) });
    await run('events', ndjson('events.ndjson', [
      { event_id: 1, at: at(10, 30), user_id: 'u1', fraud: false }, // 10:00 happened, not known yet
      { event_id: 2, at: at(11), user_id: 'u1', fraud: true }, // 10:00 known at exactly 11:00
      { event_id: 3, at: at(12, 30), user_id: 'u1', fraud: false }, // 12:00 not known until 13:00
      { event_id: 4, at: at(13, 0, 1), user_id: 'u1', fraud: true }, // 12:00 known
      { event_id: 5, at: at(14, 30), user_id: 'u2', fraud: false }, // u2: only a late row, below
      { event_id: 6, at: at(14, 0, 1), user_id: 'u1', fraud: false }, // 12:00 is 2h00m01s old
    ]), { start: at(0), end: at(24) });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('a first backfill joins rows from their event time plus the declared lag, not before', async () => {
    const scoresGroup = await store.group('scores', 1);
    const rows = await store.read(scoresGroup).toArray();
    expect(rows).toHaveLength(2);
    const values = await joined(known);
    expect(values).toEqual({ 1: null, 2: 1, 3: 1, 4: 2, 5: null, 6: 2 });
  });

  it("a late row for a committed window is absent from every training row before its commit became visible, yet served online from then on", async () => {
    const before = Date.now();
    // u2's 09:00 score arrives now (2026), for the day already committed.
    await run('scores', ndjson('late.ndjson', [{ user_id: 'u2', at: at(9), score: 7 }]), { start: at(0), end: at(24) });
    const scoresGroup = await store.group('scores', 1);
    const late = (await store.commits(scoresGroup, { status: 'committed' })).at(-1);
    expect(late?.visibleAt?.getTime()).toBeGreaterThanOrEqual(before - 1000);
    // Knowledge time: event 5 (14:30 on 2024-01-01) could not have seen it.
    expect((await joined(known))[5]).toBeNull();
    // Corrected history (event time only) does see it.
    expect((await joined(corrected))[5]).toBe(7);
    // Online, it is u2's latest row from now on.
    const [online] = await store.online(scoresGroup, [{ user_id: 'u2' }]);
    expect(online?.score).toBe(7);
  });

  it('a ttl drops a row older than it, at its boundary', async () => {
    const values = await joined(fresh);
    // Event 4 at 13:00:01 sees 12:00 (1h00m01s old); event 6 at 14:00:01 finds it 2h00m01s old: null.
    expect(values[4]).toBe(2);
    expect(values[6]).toBeNull();
    // Event 2 at 11:00 sees 10:00, exactly 1h old: within 2h.
    expect(values[2]).toBe(1);
  });

  it('commits from before their known-lag was recorded bound nothing: windowed reads are the same', async () => {
    const lags = await db.knex('feature_commits').where({ status: 'committed' }).pluck('max_known_lag_ms');
    // The backfill's 1h lag (ms), and the late row's, known about two years after it happened.
    expect(lags.map(Number)).toContain(3_600_000);
    expect(Math.max(...lags.map(Number))).toBeGreaterThan(365 * 24 * 3_600_000);
    await db.knex('feature_commits').update({ max_known_lag_ms: null });
    expect(await joined(known)).toEqual({ 1: null, 2: 1, 3: 1, 4: 2, 5: null, 6: 2 });
  });
});
