/**
 * A training dataset build on a real CPU worker process, SIGKILLed mid-chunk: the retry
 * on a new worker keeps the chunks the killed attempt had committed (the same tables,
 * not joined again) and builds the rest; the dataset is row for row the one an
 * uninterrupted build of the same snapshot gives, and nothing of the build is left over.
 *
 * The build is cut into 8 chunks, two at a time (the training input's `datasetChunks`),
 * so that some are committed while others are still joining when the worker dies.
 * Every wait is for evidence in Postgres or Temporal, never a sleep.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import project from '../../examples/flights/definitions.ts';
import { loadBackend } from '../../ml/backend.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { trainingPipeline } from '../../workflows/index.ts';
import { ingestFlights } from '../helpers/flights.ts';
import { spawnWorker, type WorkerProcess } from '../helpers/processes.ts';
import { until } from '../helpers/serving.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from '../helpers/services.ts';

// Three weeks of flights and their airport windows in the store.
const window = { start: '2001-01-03T00:00:00.000Z', end: '2001-01-24T00:00:00.000Z' };
const splits = { validationStart: '2001-01-17T00:00:00.000Z', testStart: '2001-01-20T00:00:00.000Z' };
const CHUNKS = 8;

describe('a dataset build killed mid-chunk resumes (real worker processes, Temporal, Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let gpu: RunningWorker;
  const workers: WorkerProcess[] = [];

  const rows = async <T>(text: string, bindings: unknown[] = []): Promise<T[]> => ((await db.knex.raw(text, bindings as never)) as { rows: T[] }).rows;
  /** The build's chunk tables that are committed (visible to another session), with their table oids. */
  const committedChunks = () => rows<{ name: string; oid: number }>(`select c.relname as name, c.oid::int as oid from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = current_schema() and c.relname like 'td\\_joining\\_%' order by 1`);

  beforeAll(async () => {
    db = await createTestDb('dataset_resume');
    temporal = await createTestTemporal('dataset-resume');
    const backend = await loadBackend('cpu', 'wasm');
    // Ingest with an in-process worker, stopped before the build so that only worker processes take it.
    const ingest = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
    try {
      await ingestFlights(temporal, window);
    } finally {
      await ingest.stop();
    }
    gpu = await startInProcessWorker('gpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
  }, 300_000);

  afterAll(async () => {
    for (const w of workers) await w.kill();
    await gpu?.stop();
    await temporal?.close();
    await db?.close();
  });

  const startCpu = async (): Promise<WorkerProcess> => {
    const worker = spawnWorker('cpu', { prefix: temporal.prefix, schema: db.schema });
    workers.push(worker);
    await worker.waitFor(/polling task queue/, 180_000);
    return worker;
  };

  it('keeps the chunks committed before the SIGKILL, builds only the others, and gives the same rows as an uninterrupted build', async () => {
    const first = await startCpu();
    const handle = await temporal.client.workflow.start(trainingPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('dataset-resume'),
      args: [{ featureView: 'flight_delays', model: 'resume_dataset', params: { hiddenUnits: [4], epochs: 1, seed: 1 }, ...window, ...splits, datasetChunks: CHUNKS }],
    });

    // Evidence: some chunks committed, the others not yet.
    const atKill = await until(committedChunks, (done) => done.length >= 2 && done.length <= CHUNKS - 2, 120_000);
    await first.kill();
    console.log(`[dataset_resume] SIGKILL with ${atKill.length} of ${CHUNKS} chunks committed: ${atKill.map((c) => c.name.slice(-2)).join(', ')}`);

    const second = await startCpu();
    const result = await handle.result();
    const history = await handle.fetchHistory();
    const attempts = Math.max(...(history.events ?? []).flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt ?? 1] : [])));
    expect(attempts).toBeGreaterThanOrEqual(2);
    await second.waitFor(/training dataset build resumed/, 10_000);

    // The dataset's partitions: those committed before the kill are the very same tables (renamed, not rebuilt).
    const training = new TrainingStore({ knex: db.knex });
    const dataset = await training.dataset(result.trainingDatasetId);
    const parts = await rows<{ name: string; oid: number }>(
      `select c.relname as name, c.oid::int as oid from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = to_regclass(?) order by 1`,
      [dataset.tableName],
    );
    expect(parts).toHaveLength(CHUNKS);
    for (const chunk of atKill) {
      const index = Number.parseInt(chunk.name.slice(-2), 16);
      expect(parts.find((p) => p.name === `${dataset.tableName}_${index}`)?.oid).toBe(chunk.oid);
    }
    expect(await committedChunks()).toEqual([]);

    // The same rows, in the same stored order, as an uninterrupted build of the same snapshot and window.
    const view = await new FeatureStore({ knex: db.knex }).view('flight_delays', result.featureView.version);
    const fresh = await training.createDataset(view, { idempotencyKey: uniqueId('uninterrupted'), chunks: CHUNKS, start: new Date(window.start), end: new Date(window.end), validationStart: new Date(splits.validationStart), testStart: new Date(splits.testStart) });
    expect(fresh.commits).toEqual(dataset.commits);
    expect(fresh.rowCounts).toEqual(dataset.rowCounts);
    const digest = async (table: string) =>
      (await rows<{ md5: string; n: number }>(`select md5(string_agg(t::text, '|' order by t._chunk, t._split, t._shuffle, t.flight_id)) as md5, count(*)::int as n from ?? t`, [table]))[0];
    const [resumed, uninterrupted] = [await digest(dataset.tableName), await digest(fresh.tableName)];
    console.log(`[dataset_resume] ${resumed?.n} rows; resumed ${resumed?.md5}, uninterrupted ${uninterrupted?.md5}`);
    expect(resumed?.n).toBe(dataset.rowCounts.train + dataset.rowCounts.validation + dataset.rowCounts.test);
    expect(resumed).toEqual(uninterrupted);
    expect(await second.stop()).toBe(0);
  }, 360_000);
});
