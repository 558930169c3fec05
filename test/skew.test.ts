/**
 * Training/serving skew: the prediction server logs what it served (sampled, here
 * every entity), and the skew check recomputes each logged vector offline, point in
 * time at the request time, through the skewCheck workflow and `fti monitor skew`.
 *
 * The store is test/exact-windows.test.ts's (its online = offline proof): checks at an
 * origin (the spine, online) joined with the origin's exact 1 h trip windows (a windowed
 * group), with trips of the last hour, so the windows joined at the request time are
 * live values. Served honestly, every feature agrees; after one online row is changed
 * behind the store's back, exactly that feature of that entity disagrees, by exactly
 * the change.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { Knex } from 'knex';
import type { SkewReport } from '../activities/skew.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { defineFeatureView } from '../features/views.ts';
import { loadBackend } from '../ml/backend.ts';
import { createKnex } from '../registry/db/index.ts';
import { FeatureStore, groupTables } from '../registry/feature-store/index.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { MonitoringStore, type ServedRow } from '../registry/monitoring/index.ts';
import { createServingMetrics, type ServingMetrics } from '../serving/metrics.ts';
import { buildServer, type PredictionServer } from '../serving/server.ts';
import { SkewLog } from '../serving/skew-log.ts';
import { featurePipeline, skewCheck } from '../workflows/index.ts';
import { runFti } from './helpers/cli.ts';
import { scratchFiles } from './helpers/files.ts';
import { registerModelVersion } from './helpers/models.ts';
import { postPredict, until } from './helpers/serving.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const { dir, ndjson } = scratchFiles('skew');

const trips = defineFeatureGroup({
  name: 'trips',
  version: 1,
  entityKeys: ['trip_id'],
  eventTime: 'at',
  features: { trip_id: 'int', at: 'timestamp', origin: 'string', minutes: 'float', done_at: 'timestamp' },
  source: { kind: 'ndjson', path: '/dev/null' },
  availability: { column: 'done_at' },
});
const tripStats = defineFeatureGroup({
  name: 'trip_stats',
  version: 1,
  entityKeys: ['origin'],
  eventTime: 'at',
  source: { kind: 'feature_group', name: 'trips', version: 1 },
  aggregation: {
    groupBy: { origin: 'origin' },
    windows: ['1h'],
    metrics: [
      { name: 'minutes_mean', fn: 'avg', column: 'minutes' },
      { name: 'trips', fn: 'count' },
    ],
  },
  online: true,
});
const checks = defineFeatureGroup({
  name: 'checks',
  version: 1,
  entityKeys: ['check_id'],
  eventTime: 'at',
  features: { check_id: 'int', at: 'timestamp', origin: 'string', distance: 'float', priority: 'int', urgent: 'bool', ok: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'ok',
  online: true,
});
const view = defineFeatureView({
  name: 'checked',
  version: 1,
  spine: checks,
  label: 'ok',
  joins: [{ group: tripStats, on: { origin: 'origin' } }],
  features: ['checks.distance', 'checks.priority', 'checks.urgent', 'checks.origin', 'trip_stats.minutes_mean_1h', 'trip_stats.trips_1h'],
});
const project = defineProject({ featureGroups: [trips, tripStats, checks], featureViews: [view] });

const MIN = 60_000;
const ORIGINS = ['X', 'Y', 'Z'];
const CHECKS = 40;
/** The change made behind the store's back: one check's distance. */
const DELTA = 12.5;
const CHANGED_CHECK = 7;

describe('training/serving skew', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let admin: Knex;
  let server: PredictionServer;
  let base: string;
  const now = Date.now();
  const iso = (ms: number) => new Date(now + ms).toISOString();

  const run = (featureGroup: string, window: { start: string; end: string }, rows?: object[]) =>
    temporal.client.workflow.execute(featurePipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('fp'),
      args: [{ featureGroup, ...window, ...(rows ? { source: { kind: 'ndjson' as const, path: ndjson(`${featureGroup}-${uniqueId('rows')}.ndjson`, rows) } } : {}) }],
    });
  const check = (start: Date, end: Date) =>
    temporal.client.workflow.execute(skewCheck, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('skew'), args: [{ model: 'checker', start: start.toISOString(), end: end.toISOString() }] });
  const cli = (start: Date, end: Date) => runFti(['monitor', 'skew', 'checker@champion', '--start', start.toISOString(), '--end', end.toISOString(), '--json'], { prefix: temporal.prefix, schema: db.schema });
  /** Serves every check, half in one batch and half one request each; the entities scored. */
  const serveAll = async (): Promise<number> => {
    const ids = Array.from({ length: CHECKS }, (_, i) => i + 1);
    const batch = await postPredict(base, 'checker', { keys: ids.slice(0, CHECKS / 2).map((check_id) => ({ check_id })) });
    expect(batch.status).toBe(200);
    const singles = await Promise.all(ids.slice(CHECKS / 2).map((check_id) => postPredict(base, 'checker', { keys: { check_id } })));
    for (const s of singles) expect(s.status).toBe(200);
    return [...batch.body.predictions, ...singles.flatMap((s) => s.body.predictions)].filter((p) => p.status === 'OK').length;
  };
  const logged = async (since: Date) => Number((await db.knex('skew_log').where('served_at', '>=', since).count<Array<{ count: string }>>('* as count'))[0]?.count ?? 0);

  beforeAll(async () => {
    db = await createTestDb('skew');
    temporal = await createTestTemporal('skew');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [dir] });
    admin = createKnex({ url: inject('adminDatabaseUrl'), schema: db.schema, poolMax: 1, applicationName: 'fti-test-skew-admin' });
    const day = { start: iso(-24 * 60 * MIN), end: iso(24 * 60 * MIN) };
    // Trips of the last hour, known a little after they happen: the 1 h windows in force now are live.
    await run(
      'trips',
      day,
      Array.from({ length: 24 }, (_, i) => ({ trip_id: i + 1, at: iso(-(58 - 2 * i) * MIN), origin: ORIGINS[i % 3], minutes: 5 + 3 * i, done_at: iso(-(57 - 2 * i) * MIN) })),
    );
    // Window end a day ahead: every change point up to now is in the offline store too.
    await run('trip_stats', day);
    await run(
      'checks',
      day,
      Array.from({ length: CHECKS }, (_, i) => ({
        check_id: i + 1,
        at: iso(-(55 - i) * MIN),
        origin: ORIGINS[i % 3],
        distance: 100 + 7.25 * i,
        priority: i % 4,
        urgent: i % 5 === 0,
        ok: i % 3 !== 0,
      })),
    );
    const backend = await loadBackend('cpu', 'wasm');
    // The checks' hour: its first 80% is the train split.
    await registerModelVersion(db.knex, backend.tf, { model: 'checker', view, start: iso(-60 * MIN), end: iso(0), seed: 1, epochs: 0 });
    await new ModelRegistry({ knex: db.knex }).setAlias('checker', 'champion', 1);
    // As `fti serve` runs it: the serving role, logging every entity it scores.
    const servingUrl = db.urlFor('serving');
    const servingKnex = createKnex({ url: servingUrl, schema: db.schema, applicationName: 'fti-test-serve-skew' });
    server = await buildServer({ knex: servingKnex, tf: backend.tf, databaseUrl: servingUrl, schema: db.schema, skewLogRate: 1, skewLogTuning: { flushMs: 50, batchSize: 16 }, log: () => {} });
    server.app.addHook('onClose', async () => servingKnex.destroy());
    base = await server.app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await server?.app.close();
    await admin?.destroy();
    await worker?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('served honestly, every logged vector equals the offline point-in-time vector of its entity at its request time', async () => {
    const start = new Date();
    const served = await serveAll();
    expect(served).toBe(CHECKS);
    // Written in batches off the request path, shortly after.
    await until(() => logged(start), (n) => n === served);
    const end = new Date(Date.now() + 1);

    const report = await check(start, end);
    expect(report).toMatchObject({ model: 'checker', modelVersion: 1, featureView: { name: 'checked', version: 1 }, rows: served, alerts: [] });
    expect(report.features.map((f) => [f.feature, f.kind, f.rows, f.mismatches, f.nullMismatches])).toEqual(
      view.features.map((f) => [f.name, f.type === 'string' || f.type === 'bool' ? 'categorical' : 'numeric', served, 0, 0]),
    );
    for (const f of report.features) if (f.kind === 'numeric') expect(f.maxAbsDiff).toBe(0);
    // The windows joined were live values, not all empty: the comparison compared something.
    const rows = await db.knex('skew_log').where('served_at', '>=', start).select('features');
    const windows = rows.map((r: { features: Record<string, unknown> }) => Number(r.features.trips_1h));
    expect(Math.max(...windows)).toBeGreaterThan(0);

    // The offline vectors are the same by either plan of the point-in-time join.
    const store = new FeatureStore({ knex: db.knex });
    const snapshot = await store.latestSnapshot(view);
    const entities = new MonitoringStore({ knex: db.knex }).servedEntities({ model: 'checker', modelVersion: 1, start, end });
    const [lateral, window] = await Promise.all(
      (['lateral', 'window'] as const).map(async (strategy) => (await store.entityRows(view, snapshot, { entities, strategy }).toArray()).sort((a, b) => Number(a._id) - Number(b._id))),
    );
    expect(lateral).toHaveLength(served);
    expect(window).toEqual(lateral);

    // The CLI, as the worker role: the same verdict, exit 0.
    const printed = await cli(start, end);
    expect(printed.code, printed.stderr).toBe(0);
    const cliReport = JSON.parse(printed.stdout) as SkewReport;
    expect(cliReport.rows).toBe(served);
    expect(cliReport.alerts).toEqual([]);

    // /metrics: the queue is empty, every sampled row was written, none dropped.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^fti_serve_skew_log_queue_depth 0$/m);
    expect(metrics).toMatch(new RegExp(`^fti_serve_skew_log_rows_total ${served}$`, 'm'));
    expect(metrics).not.toMatch(/^fti_serve_skew_log_dropped_total\{/m);
  });

  it('an online row changed behind the store\'s back shows as skew in exactly that feature, by exactly the change', async () => {
    const online = groupTables(checks.name, checks.version).online;
    const changed = await admin(online).where({ check_id: CHANGED_CHECK }).increment('distance', DELTA);
    expect(changed).toBe(1);
    const start = new Date();
    const served = await serveAll();
    await until(() => logged(start), (n) => n === served);
    const end = new Date(Date.now() + 1);

    const report = await check(start, end);
    expect(report.rows).toBe(served);
    expect(report.alerts).toEqual(['distance']);
    const distance = report.features.find((f) => f.feature === 'distance');
    expect(distance).toMatchObject({ mismatches: 1, nullMismatches: 0, maxAbsDiff: DELTA });
    expect(distance?.mismatchShare).toBeCloseTo(1 / served, 12);
    for (const f of report.features.filter((x) => x.feature !== 'distance')) expect(f.mismatches, f.feature).toBe(0);

    // Scripts see it: exit 3, as `fti monitor drift` on an alert.
    const printed = await cli(start, end);
    expect(printed.code, printed.stderr).toBe(3);
    expect((JSON.parse(printed.stdout) as SkewReport).alerts).toEqual(['distance']);
  });

  it('the serving role may add to the skew log and do nothing else with it', async () => {
    const serving = createKnex({ url: db.urlFor('serving'), schema: db.schema, poolMax: 1, applicationName: 'fti-test-skew-serving' });
    try {
      await expect(serving('skew_log').select('id').limit(1)).rejects.toThrow(/permission denied/);
      await expect(serving('skew_log').delete()).rejects.toThrow(/permission denied/);
      await expect(serving('feature_skew').select('feature').limit(1)).rejects.toThrow(/permission denied/);
    } finally {
      await serving.destroy();
    }
  });
});

describe('the skew log queue', () => {
  const row = (i: number): ServedRow => ({ model: 'm', modelVersion: 1, featureView: { name: 'v', version: 1 }, entityKeys: { id: i }, servedAt: new Date(), features: { x: i }, prediction: 0.5 });
  const counter = async (metrics: ServingMetrics, name: string) => (await metrics.registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#'));

  it('never waits on a stuck database: past its bound it drops and counts, and writes the rest once the database answers', async () => {
    const metrics = createServingMetrics();
    let release: () => void = () => {};
    const blocked = new Promise<void>((resolve) => (release = resolve));
    const written: ServedRow[][] = [];
    const write = async (rows: ServedRow[]) => {
      await blocked;
      written.push(rows);
    };
    const log = new SkewLog({ rate: 1, metrics, log: () => {}, maxQueue: 5, batchSize: 2, flushMs: 10, write });
    // The first batch of 2 is taken by a write that hangs; 5 more fill the queue; 3 are dropped.
    for (let i = 0; i < 10; i++) log.add(row(i));
    expect(await counter(metrics, 'fti_serve_skew_log_queue_depth')).toEqual(['fti_serve_skew_log_queue_depth 5']);
    expect(await counter(metrics, 'fti_serve_skew_log_dropped_total')).toEqual(['fti_serve_skew_log_dropped_total{reason="queue_full"} 3']);
    release();
    await log.close();
    expect(written.flat().map((r) => r.entityKeys.id)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(written.every((b) => b.length <= 2)).toBe(true);
    expect(await counter(metrics, 'fti_serve_skew_log_rows_total')).toEqual(['fti_serve_skew_log_rows_total 7']);
    expect(await counter(metrics, 'fti_serve_skew_log_queue_depth')).toEqual(['fti_serve_skew_log_queue_depth 0']);
  });

  it('a failed INSERT drops its batch (counted) and the log goes on; rate 0 samples nothing, 0.25 about a quarter', async () => {
    const metrics = createServingMetrics();
    let calls = 0;
    const write = async () => {
      calls++;
      if (calls === 1) throw new Error('connection refused');
    };
    const log = new SkewLog({ rate: 1, metrics, log: () => {}, batchSize: 3, write });
    for (let i = 0; i < 6; i++) log.add(row(i));
    await log.drain();
    expect(await counter(metrics, 'fti_serve_skew_log_dropped_total')).toEqual(['fti_serve_skew_log_dropped_total{reason="write_failed"} 3']);
    expect(await counter(metrics, 'fti_serve_skew_log_rows_total')).toEqual(['fti_serve_skew_log_rows_total 3']);

    expect(new SkewLog({ rate: 0, metrics, log: () => {}, write: async () => {} }).sample()).toBe(false);
    let seed = 1;
    const random = () => ((seed = (seed * 16_807) % 2_147_483_647) / 2_147_483_647);
    const quarter = new SkewLog({ rate: 0.25, metrics, log: () => {}, write: async () => {}, random });
    const sampled = Array.from({ length: 4000 }, () => quarter.sample()).filter(Boolean).length;
    expect(sampled).toBeGreaterThan(900);
    expect(sampled).toBeLessThan(1100);
    expect(() => new SkewLog({ rate: 1.5, metrics, log: () => {}, write: async () => {} })).toThrow(/from 0 to 1/);
  });
});
