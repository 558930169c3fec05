/**
 * Exact windows: a rolling aggregate joined onto a spine row at t is the window
 * [t - w, t) over the source events known by t — at t itself, between two source
 * events included, not at the previous event. Its rows are the instants the windows
 * change; online, the lookup takes the one in force at the request time, and agrees
 * with the offline join at the same instant.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { defineFeatureView } from '../features/views.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { createKnex } from '../registry/db/index.ts';
import { PredictionStore } from '../registry/predictions/index.ts';
import { featurePipeline } from '../workflows/index.ts';
import { scratchFiles } from './helpers/files.ts';
import { viewRowsByBothPlans } from './helpers/views.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const { dir, ndjson } = scratchFiles('windows');

// Trips are known when they end; an origin's stats count a trip only from then.
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
      { name: 'minutes_max', fn: 'max', column: 'minutes' },
    ],
  },
  online: true,
});
// The spine: checks at an origin, at any time (not at trip times).
const checks = defineFeatureGroup({
  name: 'checks',
  version: 1,
  entityKeys: ['check_id'],
  eventTime: 'at',
  features: { check_id: 'int', at: 'timestamp', origin: 'string', ok: 'bool' },
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
  features: ['trip_stats.minutes_mean_1h', 'trip_stats.trips_1h', 'trip_stats.minutes_max_1h'],
});
const project = defineProject({ featureGroups: [trips, tripStats, checks], featureViews: [view] });

const at = (h: number, m = 0, s = 0) => new Date(Date.UTC(2024, 0, 1, h, m, s)).toISOString();
type Window = { mean: unknown; n: unknown; max: unknown };

describe('exact windows', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let store: FeatureStore;

  const run = (featureGroup: string, window: { start: string; end: string }, rows?: object[]) =>
    temporal.client.workflow.execute(featurePipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('fp'),
      args: [{ featureGroup, ...window, ...(rows ? { source: { kind: 'ndjson' as const, path: ndjson(`${featureGroup}-${uniqueId('rows')}.ndjson`, rows) } } : {}) }],
    });
  /** check_id -> the windows joined onto it, with each plan; both must agree. */
  const joined = (): Promise<Record<number, Window>> =>
    viewRowsByBothPlans(db.knex, store, view, (rows) => Object.fromEntries(rows.map((r) => [Number(r.check_id), { mean: r.minutes_mean_1h, n: r.trips_1h === null ? null : Number(r.trips_1h), max: r.minutes_max_1h }])));

  beforeAll(async () => {
    db = await createTestDb('windows');
    temporal = await createTestTemporal('windows');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [dir] });
    store = new FeatureStore({ knex: db.knex });
    await store.registerView(view);
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('evaluates each spine row at its own time, between source events, counting trips only once known', async () => {
    const day = { start: at(0), end: at(24) };
    await run('trips', day, [
      { trip_id: 1, at: at(8), origin: 'X', minutes: 10, done_at: at(8, 40) },
      { trip_id: 2, at: at(8, 20), origin: 'X', minutes: 20, done_at: at(8, 25) },
      { trip_id: 3, at: at(8, 50), origin: 'X', minutes: 30, done_at: at(9, 30) },
      { trip_id: 4, at: at(9), origin: 'X', minutes: 40, done_at: at(9) },
      // Known 90 minutes after it happened: never inside its 1 h window.
      { trip_id: 5, at: at(7), origin: 'X', minutes: 99, done_at: at(8, 30) },
    ]);
    await run('trip_stats', day);
    const spine = [at(8, 10), at(8, 25), at(8, 45), at(9), at(9, 0, 1), at(9, 30), at(9, 55), at(10), at(10, 1)];
    await run('checks', day, spine.map((t, i) => ({ check_id: i + 1, at: t, origin: 'X', ok: true })));

    const none = { mean: null, n: 0, max: null };
    expect(Object.values(await joined())).toEqual([
      // 08:10: trip 1 happened at 08:00 but is known only at 08:40; trip 5 never counts: no
      // trip of X is known yet, so X has no row yet (nulls, as for any group before its first row).
      { mean: null, n: null, max: null },
      // 08:25: trip 2 (08:20) is known at exactly 08:25.
      { mean: 20, n: 1, max: 20 },
      // 08:45: trips 1 and 2.
      { mean: 15, n: 2, max: 20 },
      // 09:00: [08:00, 09:00) holds trips 1 and 2; trip 3 is not known until 09:30, trip 4 is not before 09:00.
      { mean: 15, n: 2, max: 20 },
      // 09:00:01: trip 1 has left the window, trip 4 has entered it.
      { mean: 30, n: 2, max: 40 },
      // 09:30: trips 3 (known now) and 4.
      { mean: 35, n: 2, max: 40 },
      // 09:55: trip 3 (08:50) has left.
      { mean: 40, n: 1, max: 40 },
      // 10:00: trip 4 (09:00) is still inside [09:00, 10:00).
      { mean: 40, n: 1, max: 40 },
      // 10:01: empty again, and not the last value seen.
      none,
    ]);
  });

  it('online, the windows in force at the request time equal the offline join at that instant', async () => {
    const now = Date.now();
    const min = 60_000;
    const iso = (ms: number) => new Date(now + ms).toISOString();
    const day = 24 * 60 * min;
    // Trips of the last hour, all known by now: their 1 h windows close over the next hour.
    await run('trips', { start: iso(-day), end: iso(0) }, [
      { trip_id: 101, at: iso(-50 * min), origin: 'Y', minutes: 5, done_at: iso(-45 * min) },
      { trip_id: 102, at: iso(-30 * min), origin: 'Y', minutes: 15, done_at: iso(-28 * min) },
      { trip_id: 103, at: iso(-10 * min), origin: 'Y', minutes: 25, done_at: iso(-9 * min) },
    ]);
    // The stats of the window that ends now: what lies ahead of it goes to the online store only.
    await run('trip_stats', { start: iso(-day), end: iso(0) });
    const lookup = await new PredictionStore({ knex: db.knex }).onlineLookup(view);
    const samples = [5, 15, 25, 35, 45, 55, 65].map((m) => now + m * min);
    await run('checks', { start: iso(-day), end: iso(day) }, [{ check_id: 200, at: iso(-60 * min), origin: 'Y', ok: true }]);
    const online: Window[] = [];
    for (const t of samples) {
      const [row] = await lookup.lookup([{ check_id: 200 }], new Date(t));
      online.push({ mean: row?.minutes_mean_1h, n: row?.trips_1h === null ? null : Number(row?.trips_1h), max: row?.minutes_max_1h });
    }
    expect(online.map((w) => w.n)).toEqual([3, 2, 2, 1, 1, 0, 0]);
    expect(online[1]).toEqual({ mean: 20, n: 2, max: 25 });

    // The server's pool plans the lookup once per connection (generic plan), not per
    // call: the answers are the same, and Postgres says it never made a custom plan.
    const generic = createKnex({ url: db.url, schema: db.schema, poolMax: 1, pointLookups: true, applicationName: 'fti-test-point-lookups' });
    try {
      const genericLookup = await new PredictionStore({ knex: generic }).onlineLookup(view);
      for (const [i, t] of samples.entries()) {
        const [row] = await genericLookup.lookup([{ check_id: 200 }], new Date(t));
        expect({ mean: row?.minutes_mean_1h, n: row?.trips_1h === null ? null : Number(row?.trips_1h), max: row?.minutes_max_1h }).toEqual(online[i]);
      }
      // pg_prepared_statements is per session: poolMax 1 makes this the lookup's own connection.
      const { rows } = (await generic.raw(`select generic_plans::int as generic, custom_plans::int as custom from pg_prepared_statements where name like 'fti_online_%'`)) as {
        rows: Array<{ generic: number; custom: number }>;
      };
      expect(rows).toEqual([{ generic: samples.length, custom: 0 }]);
    } finally {
      await generic.destroy();
    }

    // The next window's run computes the same instants for the history; spine rows at
    // the sampled times join exactly what was served.
    await run('trip_stats', { start: iso(0), end: iso(day) });
    await run('checks', { start: iso(-day), end: iso(day) }, samples.map((t, i) => ({ check_id: 300 + i, at: new Date(t).toISOString(), origin: 'Y', ok: true })));
    const offline = await joined();
    expect(samples.map((_, i) => offline[300 + i])).toEqual(online);
  });
});
