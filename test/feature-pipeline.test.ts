import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { parquetSource } from '../features/sources/parquet.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureType } from '../core/errors.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { FLIGHTS_3M_PARQUET } from '../examples/flights/data.ts';
import { airportDelays, flights } from '../examples/flights/definitions.ts';
import { FeatureStore, groupTables } from '../registry/feature-store/index.ts';
import { featurePipeline } from '../workflows/index.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';
import { scratchFiles } from './helpers/files.ts';
import { failureOf } from './helpers/workflows.ts';

const { dir, file, ndjson } = scratchFiles('features');

// Small hand-written groups for the store's behaviours.
const readingsCsv = file('readings.csv', 'sensor,at,value\ns1,2024-01-01T10:00:00Z,1.5\ns2,2024-01-01T10:00:00Z,2.5\ns3,2024-01-01T10:00:00Z,not-a-number\ns4,2024-01-01T10:00:00Z,4.5\ns5,2024-01-01T10:00:00Z,-3\n');
const readings = (version: number, validation: 'strict' | 'quarantine') =>
  defineFeatureGroup({
    name: 'readings',
    version,
    entityKeys: ['sensor'],
    eventTime: 'at',
    features: { sensor: 'string', at: 'timestamp', value: 'float' },
    source: { kind: 'csv', path: readingsCsv },
    expectations: [{ kind: 'range', column: 'value', min: 0 }],
    validation,
    // Two of five rows are bad on purpose: above the default 5% a quarantine commit is refused.
    maxRejectRatio: 0.5,
  });
const readingsStrict = readings(1, 'strict');
const readingsQuarantine = readings(2, 'quarantine');

const prices = defineFeatureGroup({
  name: 'prices',
  version: 1,
  entityKeys: ['item'],
  eventTime: 'at',
  features: { item: 'string', at: 'timestamp', price: 'float' },
  source: { kind: 'ndjson', path: '/dev/null' },
  online: true,
});

// Departure events at one airport, for the point-in-time aggregate test.
const departures = defineFeatureGroup({
  name: 'departures',
  version: 1,
  entityKeys: ['flight'],
  eventTime: 'at',
  features: { flight: 'int', at: 'timestamp', origin: 'string', delay: 'float', late: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  transform: (raw) => ({ ...raw, late: typeof raw.delay === 'number' ? raw.delay > 15 : null }),
});
const departureStats = defineFeatureGroup({
  name: 'departure_stats',
  version: 1,
  entityKeys: ['airport'],
  eventTime: 'at',
  source: { kind: 'feature_group', name: 'departures', version: 1 },
  aggregation: {
    groupBy: { airport: 'origin' },
    windows: ['1h'],
    metrics: [
      { name: 'delay_mean', fn: 'avg', column: 'delay' },
      { name: 'late_share', fn: 'avg', column: 'late' },
      { name: 'departures', fn: 'count' },
      { name: 'delay_max', fn: 'max', column: 'delay' },
    ],
  },
  online: true,
});

// Departures whose delays are known later, and their windows: change points at sub-millisecond instants.
const knownDepartures = defineFeatureGroup({
  name: 'known_departures',
  version: 1,
  entityKeys: ['flight'],
  eventTime: 'at',
  features: { flight: 'int', at: 'timestamp', origin: 'string', delay: 'float', known_at: 'timestamp' },
  availability: { column: 'known_at' },
  source: { kind: 'ndjson', path: '/dev/null' },
});
const knownStats = defineFeatureGroup({
  name: 'known_stats',
  version: 1,
  entityKeys: ['airport'],
  eventTime: 'at',
  source: { kind: 'feature_group', name: 'known_departures', version: 1 },
  aggregation: { groupBy: { airport: 'origin' }, windows: ['1d'], metrics: [{ name: 'delay_mean', fn: 'avg', column: 'delay' }] },
  online: true,
});

const project = defineProject({ featureGroups: [flights, airportDelays, readingsStrict, readingsQuarantine, prices, departures, departureStats, knownDepartures, knownStats] });


describe('feature pipeline and feature store (real Temporal + Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let store: FeatureStore;

  const run = (input: Parameters<typeof featurePipeline>[0]) =>
    temporal.client.workflow.execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('features'), args: [input] });

  beforeAll(async () => {
    db = await createTestDb('features');
    temporal = await createTestTemporal('features');
    // The runs below read files of the scratch directory: the worker's data root.
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [dir] });
    store = new FeatureStore({ knex: db.knex });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
  });

  describe('the flights example on one day of flights-3m.parquet', () => {
    const window = { start: '2001-01-03T00:00:00.000Z', end: '2001-01-04T00:00:00.000Z' };
    let expected: number;
    let dates: Date[];

    beforeAll(async () => {
      // Counted independently of the pipeline: every source row whose date falls in the window.
      const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(FLIGHTS_3M_PARQUET), columns: ['date'], compressors, rowEnd: 300_000 })) as Array<{ date: Date }>;
      dates = rows.map((r) => r.date);
      expected = dates.filter((d) => d >= new Date(window.start) && d < new Date(window.end)).length;
      expect(expected).toBeGreaterThan(10_000);
    });

    it("the file's statistics give the span a run's staging table is laid out by, cut to the window", async () => {
      const source = parquetSource(FLIGHTS_3M_PARQUET, 'date');
      const whole = await source.timeSpan?.({});
      if (!whole) throw new Error('no span from the statistics');
      expect(dates.every((d) => d >= whole.start && d < whole.end)).toBe(true);
      expect(whole.end.getTime() - whole.start.getTime()).toBeGreaterThan(170 * 86_400_000);
      expect(await source.timeSpan?.({ start: new Date(window.start), end: new Date(window.end) })).toEqual({ start: new Date(window.start), end: new Date(window.end) });
    });

    it('commits exactly the rows of the window, and rows in = committed + rejected', async () => {
      const result = await run({ featureGroup: 'flights', ...window });
      expect(result.rowsIn).toBe(expected);
      expect(result.rowsCommitted + result.rowsRejected).toBe(result.rowsIn);
      expect(result.rowsInserted).toBe(result.rowsCommitted);
      const group = await store.group('flights', 2);
      expect(await store.read(group).count()).toBe(result.rowsCommitted);
      const [first] = await store.read(group).toArray(1);
      expect(first).toMatchObject({ origin: expect.any(String), delayed: expect.any(Boolean) });
      expect(new Date(first?.event_time as Date).getTime()).toBeGreaterThanOrEqual(Date.parse(window.start));
      // Statistics were stored for the commit.
      const stats = await store.statistics(result.commitId);
      const distance = stats.find((s) => s.feature === 'distance');
      expect(distance?.count).toBe(result.rowsCommitted);
      expect(distance?.histogram).toHaveLength(10);
    });

    it('re-running the same window commits no new rows', async () => {
      const again = await run({ featureGroup: 'flights', ...window });
      expect(again.rowsIn).toBe(expected);
      expect(again.rowsInserted).toBe(0);
      expect(again.rowsUpdated).toBe(0);
      expect(again.rowsUnchanged).toBe(again.rowsCommitted);
      const group = await store.group('flights', 2);
      const commits = await store.commits(group, { status: 'committed' });
      expect(await store.read(group).count()).toBe(commits[0]?.rowsCommitted);
    });

    it('computes the airport rolling delays from the committed flights', async () => {
      const result = await run({ featureGroup: 'airport_delays', ...window });
      expect(result.rowsCommitted).toBeGreaterThan(1000);
      expect(result.sourceCommits).toEqual([{ featureGroup: 'flights', version: 2, commitId: expect.any(Number) }]);
      const group = await store.group('airport_delays', 3);
      const [online] = await store.online(group, [{ airport: 'ORD' }]);
      expect(online).toMatchObject({ airport: 'ORD', flights_7d: expect.any(Number) });
    });
  });

  describe('validation', () => {
    it('a strict run with one bad row commits nothing and reports the row', async () => {
      const failure = await failureOf(run({ featureGroup: 'readings', version: 1 }));
      expect(failure.type).toBe(FailureType.ValidationFailed);
      expect(failure.message).toMatch(/2 of 5 rows/);
      expect(failure.message).toMatch(/row 2: value: expected a finite number, got "not-a-number"/);
      const group = await store.group('readings', 1);
      expect(await store.read(group).count()).toBe(0);
      const [attempt] = await store.commits(group);
      expect(attempt?.status).toBe('failed');
      expect(attempt?.validationReport?.sample.map((r) => r.rowNumber)).toEqual([2, 4]);
      expect((await store.rejects(attempt?.id ?? -1)).map((r) => r.reasons[0])).toEqual(['value: expected a finite number, got "not-a-number"', 'value: -3 is below the minimum 0']);
    });

    it('a quarantine run commits the good rows and keeps each bad row with its reason', async () => {
      const result = await run({ featureGroup: 'readings', version: 2 });
      expect(result).toMatchObject({ rowsIn: 5, rowsCommitted: 3, rowsRejected: 2 });
      const group = await store.group('readings', 2);
      expect((await store.read(group).toArray()).map((r) => r.sensor)).toEqual(['s1', 's2', 's4']);
      // Statistics describe the committed rows only: 1.5, 2.5, 4.5.
      const value = (await store.statistics(result.commitId)).find((x) => x.feature === 'value');
      expect(value).toMatchObject({ count: 3, nulls: 0, min: 1.5, max: 4.5 });
      expect(value?.mean).toBeCloseTo(8.5 / 3, 10);
      expect((value?.histogram as Array<{ count: number }>).map((b) => b.count)).toEqual([1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
      const sensor = (await store.statistics(result.commitId)).find((x) => x.feature === 'sensor');
      expect(sensor).toMatchObject({ count: 3, distinctCount: 3 });
      const rejects = await store.rejects(result.commitId);
      expect(rejects).toEqual([
        { rowNumber: 2, reasons: ['value: expected a finite number, got "not-a-number"'], row: expect.objectContaining({ sensor: 's3' }) },
        { rowNumber: 4, reasons: ['value: -3 is below the minimum 0'], row: expect.objectContaining({ sensor: 's5', value: -3 }) },
      ]);
    });

    it('bad workflow input fails at once with a clear, non-retryable error', async () => {
      const failure = await failureOf(run({ featureGroup: 'Not A Name', start: 'yesterday' } as never));
      expect(failure.type).toBe(FailureType.InvalidInput);
      expect(failure.message).toMatch(/featureGroup: must match/);
      expect(failure.message).toMatch(/start: must be an ISO-8601 timestamp/);
      const unknown = await failureOf(run({ featureGroup: 'no_such_group' }));
      expect(unknown.type).toBe(FailureType.NotFound);
    });
  });

  describe('time travel and the online store', () => {
    const t9 = '2024-03-01T09:00:00.000Z';
    const t10 = '2024-03-01T10:00:00.000Z';
    const t11 = '2024-03-01T11:00:00.000Z';
    let first: number;
    let second: number;

    it('a later commit corrects a row; reading as of the older commit returns the older values', async () => {
      const a = ndjson('prices-a.ndjson', [
        { item: 'apple', at: t10, price: 1.0 },
        { item: 'pear', at: t10, price: 2.0 },
      ]);
      const b = ndjson('prices-b.ndjson', [
        { item: 'apple', at: t10, price: 1.25 }, // a correction of the same event
        { item: 'pear', at: t10, price: 2.0 }, // unchanged
        { item: 'plum', at: t11, price: 3.0 }, // new
      ]);
      first = (await run({ featureGroup: 'prices', source: { kind: 'ndjson', path: a } })).commitId;
      const result = await run({ featureGroup: 'prices', source: { kind: 'ndjson', path: b } });
      second = result.commitId;
      expect(result).toMatchObject({ rowsIn: 3, rowsInserted: 1, rowsUpdated: 1, rowsUnchanged: 1 });

      const group = await store.group('prices', 1);
      const latest = await store.read(group).toArray();
      expect(latest.map((r) => [r.item, r.price])).toEqual([
        ['apple', 1.25],
        ['pear', 2.0],
        ['plum', 3.0],
      ]);
      const old = await store.read(group, { asOfCommit: first }).toArray();
      expect(old.map((r) => [r.item, r.price])).toEqual([
        ['apple', 1.0],
        ['pear', 2.0],
      ]);
      expect(await store.read(group, { asOfCommit: second }).count()).toBe(3);
    });

    it('the online store keeps the newest row per key when a late row arrives after a newer one', async () => {
      const late = ndjson('prices-late.ndjson', [
        { item: 'apple', at: t9, price: 0.5 }, // older than the 10:00 row already online
        { item: 'plum', at: '2024-03-01T12:00:00.000Z', price: 3.5 }, // newer: replaces 11:00
      ]);
      await run({ featureGroup: 'prices', source: { kind: 'ndjson', path: late } });
      const group = await store.group('prices', 1);
      const online = await store.online(group, [{ item: 'apple' }, { item: 'plum' }, { item: 'kiwi' }]);
      expect(online[0]).toMatchObject({ item: 'apple', price: 1.25, at: new Date(t10) });
      expect(online[1]).toMatchObject({ item: 'plum', price: 3.5 });
      expect(online[2]).toBeUndefined();
      // Offline keeps every event, the late one included.
      expect(await store.read(group).count()).toBe(5);
    });

    it('a re-run whose rows are mostly stored already commits only what changed', async () => {
      const group = await store.group('prices', 1);
      const before = (await store.latestCommit(group))?.id as number;
      // Two of three rows as stored, one corrected: only the correction is committed.
      const again = ndjson('prices-again.ndjson', [
        { item: 'apple', at: t9, price: 0.5 },
        { item: 'plum', at: '2024-03-01T12:00:00.000Z', price: 3.5 },
        { item: 'pear', at: t10, price: 2.5 },
      ]);
      const result = await run({ featureGroup: 'prices', source: { kind: 'ndjson', path: again } });
      expect(result).toMatchObject({ rowsIn: 3, rowsInserted: 0, rowsUpdated: 1, rowsUnchanged: 2 });
      const price = async (asOfCommit?: number) =>
        Object.fromEntries((await store.read(group, asOfCommit === undefined ? {} : { asOfCommit }).toArray()).map((r) => [`${String(r.item)}@${(r.at as Date).toISOString()}`, r.price]));
      expect(await price()).toEqual({ ...(await price(before)), [`pear@${t10}`]: 2.5 });
      expect((await price(before))[`pear@${t10}`]).toBe(2.0);
      expect(await store.read(group).count()).toBe(5);
    });
  });

  it('rolling aggregates are exact at any time and use only events strictly before it (hand-computed)', async () => {
    // Departures at airport X (and one at Y that must not leak into X).
    const events = [
      { flight: 1, at: '2024-05-01T08:00:00Z', origin: 'X', delay: 10 },
      { flight: 2, at: '2024-05-01T08:30:00Z', origin: 'X', delay: 30 },
      { flight: 3, at: '2024-05-01T08:30:00Z', origin: 'X', delay: 50 }, // simultaneous with 2
      { flight: 4, at: '2024-05-01T09:00:00Z', origin: 'X', delay: 0 }, // exactly 1h after 1: 1 is in [8:00, 9:00)
      { flight: 5, at: '2024-05-01T09:45:00Z', origin: 'X', delay: 20 },
      { flight: 6, at: '2024-05-01T08:15:00Z', origin: 'Y', delay: 500 },
    ];
    await run({ featureGroup: 'departures', source: { kind: 'ndjson', path: ndjson('departures.ndjson', events) } });
    const result = await run({ featureGroup: 'departure_stats' });
    const group = await store.group('departure_stats', 1);
    const rows = (await store.read(group).toArray()).filter((r) => r.airport === 'X');
    // The rows are the instants X's window changes; the value at t is the latest row before t.
    const at = (iso: string) => rows.filter((r) => (r.at as Date) < new Date(iso)).at(-1);

    // 08:00 - nothing before it: X has no row yet.
    expect(at('2024-05-01T08:00:00Z')).toBeUndefined();
    // 08:30 - only flight 1 (flights 2 and 3 are at the same instant, not before it).
    expect(at('2024-05-01T08:30:00Z')).toMatchObject({ delay_mean_1h: 10, late_share_1h: 0, departures_1h: 1, delay_max_1h: 10 });
    // 09:00 - flights 1, 2, 3 in [08:00, 09:00): mean 30, two of three late.
    expect(at('2024-05-01T09:00:00Z')).toMatchObject({ delay_mean_1h: 30, departures_1h: 3, delay_max_1h: 50 });
    expect(at('2024-05-01T09:00:00Z')?.late_share_1h).toBeCloseTo(2 / 3, 10);
    // 09:20 - between events: flight 1 has left [08:20, 09:20), flight 4 has entered.
    expect(at('2024-05-01T09:20:00Z')).toMatchObject({ delay_mean_1h: 80 / 3, departures_1h: 3, delay_max_1h: 50 });
    // 09:45 - window [08:45, 09:45): flight 4 only (its own event excluded).
    expect(at('2024-05-01T09:45:00Z')).toMatchObject({ delay_mean_1h: 0, late_share_1h: 0, departures_1h: 1, delay_max_1h: 0 });
    // 11:00 - every flight has left the window.
    expect(at('2024-05-01T11:00:00Z')).toMatchObject({ delay_mean_1h: null, late_share_1h: null, departures_1h: 0, delay_max_1h: null });
    // X changes at 08:00, 08:30, 09:00 (flight 4 in, flight 1 out), 09:30, 09:45, 10:00 and 10:45; Y at 08:15 and 09:15.
    expect(rows.map((r) => (r.at as Date).toISOString().slice(11, 16))).toEqual(['08:00', '08:30', '09:00', '09:30', '09:45', '10:00', '10:45']);
    expect(result.rowsCommitted).toBe(9);
  });

  it('a re-run of a window stores nothing new, its last change point a microsecond before a whole millisecond', async () => {
    // Delays known half an hour after departure: each enters the window a microsecond before
    // it is known (finer than a Date), and the run's last stored point is such an entry.
    const events = [
      { flight: 1, at: '2024-06-01T08:00:00Z', origin: 'Z', delay: 10, known_at: '2024-06-01T08:30:00Z' },
      { flight: 2, at: '2024-06-01T09:00:00Z', origin: 'Z', delay: 40, known_at: '2024-06-01T09:30:00Z' },
    ];
    await run({ featureGroup: 'known_departures', source: { kind: 'ndjson', path: ndjson('known-departures.ndjson', events) } });
    const window = { start: '2024-06-01T00:00:00.000Z', end: '2024-06-01T12:00:00.000Z' };
    const first = await run({ featureGroup: 'known_stats', ...window });
    const group = await store.group('known_stats', 1);
    const last = (await db.knex.raw(`select to_char(max(at) at time zone 'UTC', 'HH24:MI:SS.US') as t from ${groupTables('known_stats', 1).offline}`)).rows[0]?.t;
    expect(last).toBe('09:29:59.999999');
    expect(first.rowsCommitted).toBeGreaterThan(0);
    const again = await run({ featureGroup: 'known_stats', ...window });
    expect(again).toMatchObject({ rowsCommitted: first.rowsCommitted, rowsUnchanged: first.rowsCommitted, rowsInserted: 0, rowsUpdated: 0 });
    expect(await store.read(group).count()).toBe(first.rowsCommitted);
  });

  it('registering a different schema under an existing name and version is refused', async () => {
    await store.register(prices);
    const changed = defineFeatureGroup({ name: 'prices', version: 1, entityKeys: ['item'], eventTime: 'at', features: { item: 'string', at: 'timestamp', price: 'int' }, source: { kind: 'ndjson', path: '/dev/null' } });
    await expect(store.register(changed)).rejects.toThrow(/already registered with a different schema; register the new schema as version 2/);
  });
});
