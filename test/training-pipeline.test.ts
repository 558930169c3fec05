import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import project from '../examples/flights/definitions.ts';
import { loadBackend } from '../ml/backend.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { batchInference, trainingPipeline } from '../workflows/index.ts';
import { progressQuery } from '../core/progress.ts';
import { createEncoder } from '../ml/encoding.ts';
import { ensembleFromArtifact, predictEnsemble } from '../ml/gbdt/ensemble.ts';
import { boost, GbdtParamsSchema, type EncodedRows } from '../ml/gbdt/boost.ts';
import { toBatches } from '../ml/batches.ts';
import type { Split } from '../registry/training/index.ts';
import { PredictionStore } from '../registry/predictions/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import { ingestFlights } from './helpers/flights.ts';
import { spawnWorker, type WorkerProcess } from './helpers/processes.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

// Two days of flights: about 30k labelled departures.
const window = { start: '2001-01-08T00:00:00.000Z', end: '2001-01-10T00:00:00.000Z' };
const params = { hiddenUnits: [16], epochs: 2, batchSize: 1024, seed: 7 };

describe('training pipeline: dataset on the CPU pool, training on the GPU pool, registry', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let cpu: RunningWorker;
  let gpu: WorkerProcess;
  let registry: ModelRegistry;

  beforeAll(async () => {
    db = await createTestDb('training');
    temporal = await createTestTemporal('training');
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend: await loadBackend('cpu', 'wasm') });
    // The GPU pool is a real worker process: WebGPU on this machine's Vulkan device (lavapipe in CI).
    gpu = spawnWorker('gpu', { prefix: temporal.prefix, schema: db.schema });
    await gpu.waitFor(/polling task queue/);
    registry = new ModelRegistry({ knex: db.knex });
    await ingestFlights(temporal, window);
  });

  afterAll(async () => {
    await gpu?.stop();
    await cpu?.stop();
    await temporal?.close();
    await db?.close();
  });

  const train = (input: Parameters<typeof trainingPipeline>[0]) =>
    temporal.client.workflow.execute(trainingPipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('train'), args: [input] });

  let first: Awaited<ReturnType<typeof train>>;

  it('registers version 1 with metrics and full lineage, trained on the GPU worker', async () => {
    const handle = await temporal.client.workflow.start(trainingPipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('train'), args: [{ featureView: 'flight_delays', model: 'flight_delay', params, ...window }] });
    first = await handle.result();
    expect(first.version).toBe(1);
    expect(first.featureView).toEqual({ name: 'flight_delays', version: 3 });
    expect(first.rowCounts.train).toBeGreaterThan(first.rowCounts.test);
    expect(first.training).toMatchObject({ epochs: 2, resumedFromEpoch: 0, tfjsBackend: 'webgpu' });
    // Each epoch's rate, the first read from Postgres, the second replayed from the kept splits.
    expect(first.training.epochSamplesPerSecond).toHaveLength(2);
    expect(first.training.epochSamplesPerSecond?.every((r) => r > 0)).toBe(true);
    expect(first.metrics.auc).toBeGreaterThan(0.5);
    expect(first.metrics.auc).toBeLessThanOrEqual(1);
    expect(first.metrics).toHaveProperty('logLoss');
    // The progress query shows the last epoch, from the train activity's result: the activity
    // signalled the first epoch only (a signal for the last would cost the run a workflow task).
    expect((await handle.query(progressQuery)).details).toMatchObject({ epoch: 2, epochs: 2, loss: first.training.finalLoss, unit: 'epoch' });
    const signals = (await handle.fetchHistory()).events?.filter((e) => e.workflowExecutionSignaledEventAttributes) ?? [];
    expect(signals.map((e) => (e.workflowExecutionSignaledEventAttributes?.signalName))).toEqual(['trainingEpoch']);

    const version = await registry.getModelVersion('flight_delay', 1);
    expect(version.metrics.auc).toBe(first.metrics.auc);
    expect(version.params).toMatchObject({ hiddenUnits: [16], epochs: 2 });
    const store = new FeatureStore({ knex: db.knex });
    const flightsCommit = await store.latestCommit(await store.group('flights', 2));
    const airportCommit = await store.latestCommit(await store.group('airport_delays', 3));
    expect(version.lineage).toMatchObject({
      featureView: { name: 'flight_delays', version: 3 },
      trainingDatasetId: first.trainingDatasetId,
      tfjsBackend: 'webgpu',
      workflowId: expect.stringMatching(/^train_/),
      runId: expect.any(String),
      codeVersion: expect.stringMatching(/^[0-9a-f]{40}/),
    });
    expect(version.lineage.featureGroupCommits).toEqual(
      expect.arrayContaining([
        { featureGroup: 'flights', version: 2, commitId: flightsCommit?.id },
        { featureGroup: 'airport_delays', version: 3, commitId: airportCommit?.id },
      ]),
    );
    // "Which model versions used commit X" answers from the same lineage.
    const users = await registry.versionsUsingCommit({ featureGroup: 'airport_delays', version: 3, commitId: airportCommit?.id ?? -1 });
    expect(users.map((v) => v.version)).toEqual([1]);
    // The signature names the view's features, with the train split's statistics.
    expect(version.signature.inputs.map((i) => i.name)).toContain('delay_mean_2h');
    expect(version.signature.output).toEqual({ name: 'delayed', kind: 'binary_classifier' });
  });

  it('promotes according to the policy: when the alias is unset, and not when the margin is not met', async () => {
    const second = await train({ featureView: 'flight_delays', model: 'flight_delay', params, trainingDatasetId: first.trainingDatasetId, promote: { alias: 'champion', metric: 'auc', minDelta: 0 } });
    expect(second.version).toBe(2);
    expect(second.promotion).toMatchObject({ promoted: true, alias: 'champion', metric: 'auc', candidate: { version: 2, value: second.metrics.auc }, incumbent: null });
    expect((await registry.getAlias('flight_delay', 'champion')).version).toBe(2);

    const third = await train({ featureView: 'flight_delays', model: 'flight_delay', params, trainingDatasetId: first.trainingDatasetId, promote: { alias: 'champion', metric: 'auc', minDelta: 0.5 } });
    expect(third.version).toBe(3);
    expect(third.promotion).toMatchObject({
      promoted: false,
      candidate: { version: 3, value: third.metrics.auc },
      incumbent: { version: 2, value: second.metrics.auc },
    });
    expect(third.promotion?.reason).toMatch(/does not beat version 2/);
    expect((await registry.getAlias('flight_delay', 'champion')).version).toBe(2);
  });

  it('bad params fail the run at once with a clear error', async () => {
    await expect(train({ featureView: 'flight_delays', model: 'flight_delay', params: { hiddenUnits: 'big' }, ...window })).rejects.toThrow();
    expect((await registry.listModelVersions('flight_delay')).length).toBe(3);
  });

  it('trains gradient-boosted trees without TensorFlow.js, judges them against the MLP champion on the same rows, and batch inference scores with them', async () => {
    const gbdt = { family: 'gbdt', trees: 40, maxLeaves: 15, minLeafRows: 20, subsample: 0.8 };
    const fourth = await train({ featureView: 'flight_delays', model: 'flight_delay', params: gbdt, trainingDatasetId: first.trainingDatasetId, promote: { alias: 'champion', metric: 'auc', minDelta: 0 } });
    expect(fourth.version).toBe(4);
    expect(fourth.training).toMatchObject({ tfjsBackend: 'none', resumedFromEpoch: 0 });
    expect(fourth.training.epochs).toBeGreaterThan(0); // the rounds kept (the best on validation)
    expect(fourth.training.epochs).toBeLessThanOrEqual(40);
    expect(fourth.metrics.auc).toBeGreaterThan(0.6);
    const version = await registry.getModelVersion('flight_delay', 4);
    expect(version.params).toMatchObject({ family: 'gbdt', trees: 40, maxLeaves: 15, subsample: 0.8 });
    expect(version.lineage.tfjsBackend).toBe('none');
    // The tree encodings: numbers as they are, origin as one categorical input.
    expect(version.signature.inputs.find((i) => i.name === 'distance')?.encoding).toEqual({ kind: 'number' });
    expect(version.signature.inputs.find((i) => i.name === 'origin')?.encoding.kind).toBe('category');

    // Promotion scored both families on the candidate's validation rows.
    const decision = fourth.promotion;
    const comparison = decision?.validation;
    expect(comparison?.incumbent).toMatchObject({ version: 2, through: 'dataset' });
    expect(comparison?.rows).toBeGreaterThan(0);
    const [c, i] = [comparison?.candidate.value ?? Number.NaN, comparison?.incumbent?.value ?? Number.NaN];
    expect(decision?.promoted).toBe(c > i);

    // Batch inference with version 4 over the test window writes what the trees give its rows.
    const dataset = await new TrainingStore({ knex: db.knex }).dataset(first.trainingDatasetId);
    const rows: Array<Record<string, unknown>> = [];
    for await (const batch of new TrainingStore({ knex: db.knex }).streamSplit(dataset, 'test', ['flight_id', ...version.signature.inputs.map((input) => input.name)])) rows.push(...batch);
    const testStart = dataset.testStart.toISOString();
    const runId = uniqueId('batch_gbdt');
    const scored = await temporal.client.workflow.execute(batchInference, { taskQueue: temporal.cpuQueue, workflowId: runId, args: [{ model: 'flight_delay', version: 4, start: testStart, end: dataset.windowEnd.toISOString() }] });
    expect(scored).toMatchObject({ version: 4, rowsRejected: 0 });
    const ensemble = ensembleFromArtifact(await registry.loadArtifact('flight_delay', 4));
    const expected = predictEnsemble(ensemble, createEncoder(version.signature).encodeRows(rows), rows.length);
    const byFlight = new Map((await new PredictionStore({ knex: db.knex }).predictions(scored.runId)).map((p) => [p.entityKey.flight_id, p.score]));
    expect(rows.length).toBeGreaterThan(500);
    expect(byFlight.size).toBeGreaterThanOrEqual(rows.length); // flights without a label are scored too
    rows.forEach((row, k) => expect(byFlight.get(row.flight_id)).toBeCloseTo(expected[k] as number, 5));
    expect(new Set([...expected].map((v) => v.toFixed(3))).size).toBeGreaterThan(10);
  });

  it('fit gradient-boosted trees on a maxRows sample of a bigger split: its first rows in stored order, so memory is set by configuration', async () => {
    const params = { family: 'gbdt', trees: 10, maxLeaves: 15, minLeafRows: 20, maxRows: 5_000 };
    const sampled = await train({ featureView: 'flight_delays', model: 'flight_delay', params, trainingDatasetId: first.trainingDatasetId });
    expect(first.rowCounts.train).toBeGreaterThan(5_000);
    expect(sampled.training.trainingRows).toBe(5_000);
    const version = await registry.getModelVersion('flight_delay', sampled.version);
    expect(version.params).toMatchObject({ family: 'gbdt', maxRows: 5_000 });

    // The same trees as boosting, here, the first 5,000 rows of each split as the dataset stores them.
    const store = new TrainingStore({ knex: db.knex });
    const dataset = await store.dataset(first.trainingDatasetId);
    const encoder = createEncoder(version.signature);
    const columns = [...version.signature.inputs.map((i) => i.name), 'delayed'];
    const firstRows = async (split: Split): Promise<EncodedRows> => {
      const x: number[] = [];
      const y: number[] = [];
      for await (const batch of toBatches(store.streamSplit(dataset, split, columns), encoder, { label: 'delayed', batchSize: 1000 })) {
        x.push(...batch.x.subarray(0, batch.size * encoder.width));
        y.push(...batch.y.subarray(0, batch.size));
      }
      const rows = Math.min(y.length, 5_000);
      return { x: Float32Array.from(x.slice(0, rows * encoder.width)), y: Float32Array.from(y.slice(0, rows)), rows };
    };
    const trainRows = await firstRows('train');
    const here = await boost({
      train: trainRows,
      validation: await firstRows('validation'),
      width: encoder.width,
      categories: version.signature.inputs.map((i) => (i.encoding.kind === 'category' ? i.encoding.categories.length : 0)),
      outputKind: 'binary_classifier',
      params: GbdtParamsSchema.parse(params),
    });
    const registered = ensembleFromArtifact(await registry.loadArtifact('flight_delay', sampled.version));
    const probe = trainRows.x.subarray(0, 1000 * encoder.width);
    expect([...predictEnsemble(registered, probe, 1000)]).toEqual([...predictEnsemble(here.ensemble, probe, 1000)]);
    expect(new Set([...predictEnsemble(registered, probe, 1000)].map((v) => v.toFixed(3))).size).toBeGreaterThan(10);
  });
});
