/**
 * Batch inference end to end, on one day of the flights example: the real feature
 * pipeline fills the store, model versions are registered with lineage as training
 * registers them, and the batchInference workflow scores the day through real
 * workers into Postgres.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { FeatureReaders } from '../activities/feature-reader.ts';
import { createInferenceActivities, LATERAL_MAX_ROWS, planFor, sliceWindow, STREAM_MAX_ROWS, type BatchInferencePlan, type PartitionResult, type PlanBatchInferenceInput } from '../activities/inference.ts';
import { ColumnArrays, rowOf, type ColumnBatch } from '../core/columns.ts';
import { FailureType } from '../core/errors.ts';
import project, { flightDelays } from '../examples/flights/definitions.ts';
import { modelFromArtifact } from '../ml/artifact.ts';
import { loadBackend, type LoadedBackend } from '../ml/backend.ts';
import { createEncoder } from '../ml/encoding.ts';
import { predictRows } from '../ml/predict.ts';
import { databaseOf } from '../registry/db/index.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { bucketBoundaries, PredictionStore } from '../registry/predictions/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import { progressQuery } from '../core/progress.ts';
import { batchInference } from '../workflows/index.ts';
import { ingestFlights } from './helpers/flights.ts';
import { registerModelVersion } from './helpers/models.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';
import { failureOf } from './helpers/workflows.ts';

const day = { start: '2001-01-03T00:00:00.000Z', end: '2001-01-04T00:00:00.000Z' };

describe('batch inference: a day of flights through the batchInference workflow', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let backend: LoadedBackend;
  let cpu: RunningWorker;
  let registry: ModelRegistry;
  let predictions: PredictionStore;
  let flightsOfTheDay: number;
  let trainingDatasetId: number;

  beforeAll(async () => {
    db = await createTestDb('batch_inference');
    temporal = await createTestTemporal('batch-inference');
    backend = await loadBackend('cpu', 'wasm');
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
    registry = new ModelRegistry({ knex: db.knex });
    predictions = new PredictionStore({ knex: db.knex });
    await ingestFlights(temporal, day);
    // Version 1 becomes the champion; version 2 (same dataset, other seed) waits unpromoted.
    const first = await registerModelVersion(db.knex, backend.tf, { model: 'flight_delay', view: flightDelays, ...day, seed: 3 });
    trainingDatasetId = first.trainingDatasetId;
    await registerModelVersion(db.knex, backend.tf, { model: 'flight_delay', view: flightDelays, ...day, seed: 4 });
    await registry.setAlias('flight_delay', 'champion', 1);
    const store = new FeatureStore({ knex: db.knex });
    flightsOfTheDay = await store.read(await store.group('flights', 2), { start: new Date(day.start), end: new Date(day.end) }).count();
    expect(flightsOfTheDay).toBeGreaterThan(10_000);
    expect((await registry.getAlias('flight_delay', 'champion')).version).toBe(1);
  });

  afterAll(async () => {
    await cpu?.stop();
    await temporal?.close();
    await db?.close();
  });

  const start = (input: Parameters<typeof batchInference>[0], workflowId = uniqueId('batch')) =>
    temporal.client.workflow.start(batchInference, { taskQueue: temporal.cpuQueue, workflowId, args: [input] });
  const run = async (input: Parameters<typeof batchInference>[0], workflowId?: string) => (await start(input, workflowId)).result();

  let firstRun: Awaited<ReturnType<typeof run>>;

  it('writes exactly one prediction per flight of the day, all from the champion version', async () => {
    firstRun = await run({ model: 'flight_delay', ...day, partitions: 4 });
    expect(firstRun).toMatchObject({ model: 'flight_delay', version: 1, rowsRejected: 0, featureView: { name: 'flight_delays', version: 3 } });
    expect(firstRun.rows).toBe(flightsOfTheDay);
    expect(firstRun.runId).toMatch(/^batch_/); // the workflow id, by default
    // Where the partitions' time went, by stage.
    for (const stage of ['read', 'score', 'write'] as const) expect(firstRun.stageSeconds?.[stage], stage).toBeGreaterThan(0);

    expect(await predictions.countPredictions(firstRun.runId)).toEqual([{ version: 1, rows: flightsOfTheDay, entities: flightsOfTheDay }]);
    const stored = await predictions.run(firstRun.runId);
    expect(stored).toMatchObject({ status: 'completed', version: 1, requestedRef: 'champion', rows: flightsOfTheDay, spineRows: flightsOfTheDay });
    expect(stored.strategy).toBe(planFor(Math.max(...(await predictions.partitions(firstRun.runId)).map((p) => p.spineRows))));
    // The run records the commits it read: the latest of both groups.
    const store = new FeatureStore({ knex: db.knex });
    for (const { group: name, version } of [flightDelays.spine, ...flightDelays.joins]) {
      const latest = await store.latestCommit(await store.group(name, version));
      expect(stored.commits).toContainEqual({ featureGroup: name, version, commitId: latest?.id });
      expect(await predictions.runsUsingCommit({ featureGroup: name, version, commitId: latest?.id ?? -1 })).toContain(firstRun.runId);
    }
    const partitions = await predictions.partitions(firstRun.runId);
    expect(partitions.map((p) => p.status)).toEqual(['done', 'done', 'done', 'done']);
    expect(partitions.reduce((n, p) => n + p.rows, 0)).toBe(flightsOfTheDay);
    // Cut by rows, not by time (a day's flights are not spread evenly over its hours).
    for (const p of partitions) expect(p.spineRows / flightsOfTheDay).toBeGreaterThan(0.2);
    expect(partitions[0]?.start.toISOString()).toBe(day.start);
    expect(partitions[3]?.end.toISOString()).toBe(day.end);
  });

  it('scores match the model applied to the training dataset rows of the same flights', async () => {
    // An independent path to the same numbers: the training dataset (set-based join),
    // the artifact loaded by hand, and the shared encoder.
    const version = await registry.getModelVersion('flight_delay', 1);
    const model = await modelFromArtifact(backend.tf, await registry.loadArtifact('flight_delay', 1));
    const encoder = createEncoder(version.signature);
    const dataset = await new TrainingStore({ knex: db.knex }).dataset(trainingDatasetId);
    const columns = ['flight_id', ...version.signature.inputs.map((i) => i.name)];
    const rows: Array<Record<string, unknown>> = [];
    for await (const batch of new TrainingStore({ knex: db.knex }).streamSplit(dataset, 'test', columns)) rows.push(...batch);
    expect(rows.length).toBeGreaterThan(500);
    const expected = await predictRows(backend.tf, model, encoder, rows);
    model.dispose();

    const byFlight = new Map((await predictions.predictions(firstRun.runId)).map((p) => [p.entityKey.flight_id, p.score]));
    rows.forEach((row, i) => {
      expect(byFlight.get(row.flight_id)).toBeCloseTo(expected[i] as number, 5);
    });
    // A real model, not a constant.
    expect(new Set([...expected].map((s) => s.toFixed(3))).size).toBeGreaterThan(10);
  });

  it('counts the spine in buckets of whole milliseconds, a flight on an edge in the bucket it starts', async () => {
    const store = new FeatureStore({ knex: db.knex });
    const view = (await store.view(flightDelays.name, flightDelays.version)).definition;
    const snapshot = await store.latestSnapshot(view);
    const times: number[] = [];
    for await (const rows of store.read(await store.group('flights', 2), { start: new Date(day.start), end: new Date(day.end) }).stream()) for (const r of rows) times.push((r.event_time as Date).getTime());
    expect(times).toHaveLength(flightsOfTheDay);
    // Quarter hours: flights leave on whole minutes, so many sit on an edge; the window's
    // end 7 minutes short of the day's makes its last bucket shorter than the others.
    const start = new Date(day.start);
    const end = new Date(Date.parse(day.end) - 7 * 60_000);
    const buckets = { start, end, widthMs: 15 * 60_000 };
    expect(sliceWindow(start, new Date(day.end), 96)).toEqual({ ...buckets, end: new Date(day.end) });
    const edges = bucketBoundaries(buckets);
    expect(edges).toHaveLength(97);
    expect(edges[96]).toEqual(end);
    const expected = new Array<number>(96).fill(0);
    for (const t of times) {
      if (t < start.getTime() || t >= end.getTime()) continue;
      const k = Math.floor((t - start.getTime()) / buckets.widthMs);
      expected[k] = (expected[k] ?? 0) + 1;
    }
    expect(times.filter((t) => (t - start.getTime()) % buckets.widthMs === 0).length).toBeGreaterThan(10);
    expect(await predictions.countSpineRows(view, snapshot, buckets)).toEqual(expected);
  });

  it('every plan of the join scores the same rows the same: per row, set-based, and streamed through Node', async () => {
    expect([LATERAL_MAX_ROWS, LATERAL_MAX_ROWS + 1, STREAM_MAX_ROWS, STREAM_MAX_ROWS + 1].map((n) => planFor(n))).toEqual(['lateral', 'stream', 'stream', 'window']);
    const scored = async (runId: string) => new Map((await predictions.predictions(runId)).map((p) => [p.entityKey.flight_id, { at: p.eventTime.getTime(), score: p.score }]));
    const expected = await scored(firstRun.runId);
    expect(firstRun.rows).toBe(expected.size);
    // The stream plan twice: on the activity's thread, then on the worker's reader threads.
    const readers = new FeatureReaders(databaseOf(db.knex), 2);
    onTestFinished(() => readers.close());
    for (const [plan, plans, featureReaders] of [
      ['stream', { lateralMaxRows: 0 }, undefined],
      ['stream', { lateralMaxRows: 0 }, readers],
      ['window', { lateralMaxRows: 0, streamMaxRows: 0 }, undefined],
    ] as const) {
      const activities = createInferenceActivities({ features: new FeatureStore({ knex: db.knex }), predictions, registry, backend, plans, featureReaders });
      const env = new MockActivityEnvironment();
      const runId = uniqueId(plan);
      const planned = await env.run<[PlanBatchInferenceInput], BatchInferencePlan, typeof activities.planBatchInference>(activities.planBatchInference, { runId, model: 'flight_delay', ...day, partitions: 2 });
      if (planned.kind !== 'score') throw new Error(`expected a plan to score, got ${planned.kind}`);
      expect(planned.strategy).toBe(plan);
      for (const p of planned.partitions) await env.run(activities.predictPartition, { runId, partition: p.index });
      expect(await env.run(activities.finishBatchInference, { runId })).toMatchObject({ rows: flightsOfTheDay, rowsRejected: 0 });
      const got = await scored(runId);
      expect([...got.keys()].sort(), plan).toEqual([...expected.keys()].sort());
      for (const [flight, { at, score }] of got) {
        expect(at, `${plan}: event time of flight ${String(flight)}`).toBe(expected.get(flight)?.at);
        expect(score, `${plan}: score of flight ${String(flight)}`).toBeCloseTo(expected.get(flight)?.score as number, 6);
      }
    }
  });

  it('a read on a reader thread can be cancelled mid-way, and an error there fails the read with its message', async () => {
    const readers = new FeatureReaders(databaseOf(db.knex), 1);
    onTestFinished(() => readers.close());
    const features = new FeatureStore({ knex: db.knex });
    const view = (await features.view(flightDelays.name, flightDelays.version)).definition;
    const snapshot = await features.latestSnapshot(view);
    const read = { view, snapshot, start: new Date(day.start), end: new Date(day.end), strategy: 'stream' as const, batchSize: 1000 };
    const abort = new AbortController();
    const first = readers.batches(read, abort.signal);
    expect((await first.next()).value?.size).toBe(1000);
    abort.abort(new Error('stop reading'));
    await expect(first.next()).rejects.toThrow('stop reading');
    // The thread goes on serving: the whole day, as many rows as there are flights.
    let rows = 0;
    for await (const batch of readers.batches(read)) rows += batch.size;
    expect(rows).toBe(flightsOfTheDay);
    const missing = { ...read, snapshot: { ...snapshot, spine: { ...snapshot.spine, name: 'no_such_group' } } };
    await expect(readers.batches(missing).next()).rejects.toThrow(/no_such_group/);
  });

  it('batches decoded into reused arrays (ColumnArrays, given back as a reader thread gets them back) hold the same rows as fresh ones', async () => {
    const features = new FeatureStore({ knex: db.knex });
    const view = (await features.view(flightDelays.name, flightDelays.version)).definition;
    const snapshot = await features.latestSnapshot(view);
    const read = { view, snapshot, start: new Date(day.start), end: new Date(day.end), strategy: 'stream' as const, batchSize: 1000 };
    // Masked as the encoder reads them: a null row's value means nothing.
    const rowsOf = (batch: ColumnBatch) => Array.from({ length: batch.size }, (_, i) => rowOf(batch, i));
    const expected: Array<Array<Record<string, unknown>>> = [];
    for await (const batch of predictions.featureBatches(view, snapshot, read)) expected.push(rowsOf(batch));
    expect(expected.length).toBeGreaterThan(5);
    // Some rows have null features (an airport's first flights): a reused mask must be cleared.
    expect(expected.flat().some((row) => row.delay_mean_1h === null)).toBe(true);

    // On this thread: each batch's arrays are given back before the next is decoded, so the full batches all share the first one's.
    const arrays = new ColumnArrays();
    const reused: Array<Array<Record<string, unknown>>> = [];
    const distinct = new Set<Float64Array>();
    let numberColumns = 0;
    for await (const batch of predictions.featureBatches(view, snapshot, { ...read, arrays })) {
      reused.push(rowsOf(batch));
      const numbers = [...batch.columns.values()].flatMap((c) => (c.type !== 'text' && c.type !== 'value' ? [c] : []));
      numberColumns = numbers.length;
      for (const column of numbers) {
        if (batch.size === read.batchSize) distinct.add(column.values);
        arrays.give(column.values, column.nulls);
      }
    }
    expect(reused).toEqual(expected);
    expect(numberColumns).toBeGreaterThan(10);
    expect(distinct.size).toBe(numberColumns);

    // On a reader thread: each batch released once read, its buffers moved back to the thread (detached here).
    const readers = new FeatureReaders(databaseOf(db.knex), 1);
    onTestFinished(() => readers.close());
    const threaded: Array<Array<Record<string, unknown>>> = [];
    for await (const batch of readers.batches(read)) {
      threaded.push(rowsOf(batch));
      const distance = batch.columns.get('distance');
      batch.release?.();
      expect(distance?.type === 'float' && distance.values.byteLength).toBe(0);
    }
    expect(threaded).toEqual(expected);
  });

  it('a re-run of the same run id adds nothing; the same id for another window is refused', async () => {
    const runId = firstRun.runId;
    const again = await run({ model: 'flight_delay', ...day, partitions: 4, runId });
    // The same totals; it scored nothing, so it reports no stage seconds.
    const { stageSeconds, ...totals } = firstRun;
    expect(stageSeconds).toBeDefined();
    expect(again).toEqual(totals);
    expect(await predictions.countPredictions(runId)).toEqual([{ version: 1, rows: flightsOfTheDay, entities: flightsOfTheDay }]);

    const failure = await failureOf(run({ model: 'flight_delay', start: day.start, end: '2001-01-03T12:00:00.000Z', runId }));
    expect(failure.type).toBe(FailureType.Conflict);
    expect(failure.message).toMatch(/already exists for flight_delay@champion/);
    expect((await predictions.run(runId)).status).toBe('completed');
  });

  it('a retried partition replaces its own rows instead of adding to them', async () => {
    const runId = uniqueId('retry');
    const result = await run({ model: 'flight_delay', version: 2, ...day, partitions: 2, runId });
    expect(result.version).toBe(2);
    const before = await predictions.predictions(runId);
    // An attempt that died after its rows were written but before anyone heard of it:
    // the partition is pending again while its rows are still there.
    await db.knex('prediction_run_partitions').where({ run_id: runId, partition: 0 }).update({ status: 'pending' });
    const activities = createInferenceActivities({ features: new FeatureStore({ knex: db.knex }), predictions: new PredictionStore({ knex: db.knex }), registry: new ModelRegistry({ knex: db.knex }), backend });
    const env = new MockActivityEnvironment();
    const retried = await env.run<[{ runId: string; partition: number }], PartitionResult, typeof activities.predictPartition>(activities.predictPartition, { runId, partition: 0 });
    expect(retried.skipped).toBe(false);
    expect(retried.rows).toBeGreaterThan(1000);
    const after = await predictions.predictions(runId);
    expect(after).toHaveLength(before.length);
    expect(after.map((p) => [p.entityKey.flight_id, p.score])).toEqual(before.map((p) => [p.entityKey.flight_id, p.score]));
    // A partition that is done is left alone.
    expect(await env.run(activities.predictPartition, { runId, partition: 1 })).toMatchObject({ skipped: true });
  });

  it('a promotion while the run is scoring does not change the version it scores with', async () => {
    const runId = uniqueId('pinned');
    // Hold every partition's write (a SHARE lock on predictions blocks their COPY), so none
    // can finish before the pool is paused, however fast or loaded the machine is.
    const hold = await db.knex.transaction();
    await hold.raw('lock table predictions in share mode');
    const handle = await start({ model: 'flight_delay', ...day, partitions: 24, runId });
    try {
      for (;;) {
        const progress = await handle.query(progressQuery);
        if (progress.stage === 'predict') break;
        await new Promise((r) => setTimeout(r, 20));
      }
      // Pause the pool (it stops taking partitions, and finishes those in flight once the lock goes).
      const stopping = cpu.stop();
      await hold.rollback();
      await stopping;
    } finally {
      if (!hold.isCompleted()) await hold.rollback();
    }
    const pending = (await predictions.partitions(runId)).filter((p) => p.status === 'pending');
    expect(pending.length).toBeGreaterThan(0);
    const move = await registry.setAlias('flight_delay', 'champion', 2, { reason: 'mid-run promotion' });
    expect(move.toVersion).toBe(2);
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend });

    const result = await handle.result();
    expect(result.version).toBe(1);
    expect(result.rows).toBe(flightsOfTheDay);
    expect(await predictions.countPredictions(runId)).toEqual([{ version: 1, rows: flightsOfTheDay, entities: flightsOfTheDay }]);
    const finished = (await predictions.partitions(runId)).filter((p) => pending.some((q) => q.index === p.index));
    for (const p of finished) expect(p.finishedAt?.getTime()).toBeGreaterThan(move.move?.at.getTime() ?? Infinity);

    // A new run resolves the alias afresh.
    const next = await run({ model: 'flight_delay', ...day, partitions: 1 });
    expect(next.version).toBe(2);
    await registry.rollback('flight_delay', 'champion');
  });

  it('rows whose features fail the signature are counted and recorded, never scored or dropped', async () => {
    const [victim] = await predictions.predictions(firstRun.runId, { limit: 1 });
    const flightId = victim?.entityKey.flight_id;
    expect(flightId).toEqual(expect.any(Number));
    const table = 'fg_flights_v2';
    const { rows: original } = (await db.knex.raw('select distance from ?? where flight_id = ?', [table, flightId as number])) as { rows: Array<{ distance: number }> };
    // Corrupt one stored feature value (NaN fits a double column but no model input).
    await db.knex.raw(`update ?? set distance = 'NaN' where flight_id = ?`, [table, flightId as number]);
    try {
      const result = await run({ model: 'flight_delay', version: 1, ...day, partitions: 3 });
      expect(result.rowsRejected).toBe(1);
      expect(result.rows).toBe(flightsOfTheDay - 1);
      const rejects = await predictions.rejects(result.runId);
      expect(rejects).toHaveLength(1);
      expect(rejects[0]).toMatchObject({ entityKey: { flight_id: flightId }, reasons: [expect.stringMatching(/^distance: /)] });
      // Kept with its time and its features as read, the time as ISO text (as the victim's prediction had it).
      expect(rejects[0]?.eventTime.getTime()).toBe(victim?.eventTime.getTime());
      expect(rejects[0]?.features).toMatchObject({ flight_id: flightId, event_time: victim?.eventTime.toISOString(), distance: null });
      const scored = await predictions.predictions(result.runId);
      expect(scored.some((p) => p.entityKey.flight_id === flightId)).toBe(false);

      // The stream plan (rows decoded into typed columns, encoded column by column) rejects the same row, the same way.
      const activities = createInferenceActivities({ features: new FeatureStore({ knex: db.knex }), predictions, registry, backend, plans: { lateralMaxRows: 0 } });
      const env = new MockActivityEnvironment();
      const runId = uniqueId('stream-rejects');
      const planned = await env.run<[PlanBatchInferenceInput], BatchInferencePlan, typeof activities.planBatchInference>(activities.planBatchInference, { runId, model: 'flight_delay', version: 1, ...day, partitions: 2 });
      if (planned.kind !== 'score') throw new Error(`expected a plan to score, got ${planned.kind}`);
      expect(planned.strategy).toBe('stream');
      for (const p of planned.partitions) await env.run(activities.predictPartition, { runId, partition: p.index });
      expect(await env.run(activities.finishBatchInference, { runId })).toMatchObject({ rows: flightsOfTheDay - 1, rowsRejected: 1 });
      const streamed = await predictions.rejects(runId);
      expect(streamed.map(({ runId: _, ...r }) => r)).toEqual(rejects.map(({ runId: _, ...r }) => r));
      expect(new Map((await predictions.predictions(runId)).map((p) => [p.entityKey.flight_id, p.score]))).toEqual(new Map(scored.map((p) => [p.entityKey.flight_id, p.score])));
    } finally {
      await db.knex.raw('update ?? set distance = ? where flight_id = ?', [table, original[0]?.distance ?? null, flightId as number]);
    }
  });

  it('bad input fails at once with a clear, non-retryable error', async () => {
    const both = await failureOf(run({ model: 'flight_delay', alias: 'champion', version: 1, ...day }));
    expect(both.type).toBe(FailureType.InvalidInput);
    expect(both.message).toMatch(/give alias or version, not both/);
    const noWindow = await failureOf(run({ model: 'flight_delay' }));
    expect(noWindow.message).toMatch(/start and end are required/);
    const unscheduled = await failureOf(run({ model: 'flight_delay', scheduleWindow: '1d' }));
    expect(unscheduled.type).toBe(FailureType.InvalidInput);
    expect(unscheduled.message).toMatch(/not started by a Temporal Schedule/);
    const unknown = await failureOf(run({ model: 'no_such_model', ...day }));
    expect(unknown.type).toBe(FailureType.NotFound);
    expect(unknown.message).toMatch(/no_such_model/);
    const alias = await failureOf(run({ model: 'flight_delay', alias: 'nobody', ...day }));
    expect(alias.type).toBe(FailureType.NotFound);
    expect(alias.message).toMatch(/no alias 'nobody' \(aliases: champion\)/);
  });
});
