/**
 * Training throughput per available TensorFlow.js backend (each in a process of
 * its own, streaming batches from Postgres exactly as the GPU pool does), and the
 * flights model's test AUC: the real training pipeline, trained on Jan-May 2001
 * and tested on June, with the example's gradient-boosted trees and with the MLP on
 * the GPU worker's default backend; and the gap to a reference
 * gradient-boosted model (scikit-learn's HistGradientBoostingClassifier, when Python is
 * here) trained, stopped early and tested on the very same dataset rows and splits.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../cli/services/worker-process.ts';
import { FLIGHTS_CHAIN } from '../../client/pipelines/all.ts';
import { flightDelays } from '../../examples/flights/definitions.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { trainingPipeline } from '../../workflows/index.ts';
import { flightsFixture, THROUGHPUT_WEEK } from '../flights-fixture.ts';
import { round, type BenchPart, type Figure } from '../harness.ts';
import { referenceGbdt } from '../reference-gbdt.ts';

const run = promisify(execFile);
const BACKENDS = ['tensorflow', 'webgpu', 'wasm', 'cpu'] as const;

const trainingPart: BenchPart = async (ctx) => {
  const fixture = await flightsFixture(ctx);
  const figures: Figure[] = [];

  // Throughput on one week of flights (~100k training rows), per backend.
  const view = await new FeatureStore({ knex: ctx.knex }).registerView(flightDelays);
  const week = await new TrainingStore({ knex: ctx.knex }).createDataset(view, { idempotencyKey: `bench-throughput-${Date.now()}`, ...THROUGHPUT_WEEK });
  for (const backend of BACKENDS) {
    try {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'bench', 'train-throughput.ts')], {
        cwd: REPO_ROOT,
        env: { ...process.env, DATABASE_URL: ctx.databaseUrl, FTI_SCHEMA: ctx.schema, FTI_TFJS_BACKEND: backend, BENCH_DATASET_ID: String(week.id), BENCH_EPOCHS: backend === 'webgpu' || backend === 'cpu' ? '2' : '3' },
        timeout: 20 * 60_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { backend: string; device: string; samplesPerSecond: number; waitShare: number; inMemorySamplesPerSecond: number };
      ctx.log(`training throughput on ${backend}`, result);
      figures.push({
        name: `training_samples_per_s_${backend}`,
        value: result.samplesPerSecond,
        unit: 'samples/s',
        rows: week.rowCounts.train,
        baseline: 'the same model trained on the same batches held in memory (no reading: the training floor)',
        baseline_value: result.inMemorySamplesPerSecond,
        ratio: round(result.inMemorySamplesPerSecond / Math.max(result.samplesPerSecond, 1), 3),
        details: {
          backend: result.backend,
          device: result.device,
          model: '64-32 MLP, batch 512, streamed from Postgres',
          epochs: 'median of epochs after the first',
          // The per-stage breakdown: the share of an epoch spent waiting for batches; the rest is training.
          waitingForBatchesShare: result.waitShare,
        },
      });
    } catch (err) {
      ctx.log(`training throughput: backend ${backend} unavailable here`, { error: String(err).split('\n')[0] });
    }
  }

  // The flights model, as the example trains it (gradient-boosted trees), and the MLP
  // on the same dataset: the real pipeline, the MLP on the GPU worker's default backend.
  const split = { start: '2001-01-01T00:00:00Z', validationStart: '2001-05-25T00:00:00Z', testStart: '2001-06-01T00:00:00Z', end: '2001-07-01T00:00:00Z' };
  const train = (label: string, input: { params: Record<string, unknown>; trainingDatasetId?: number }) =>
    fixture.client.workflow.execute(trainingPipeline, { taskQueue: fixture.cpuQueue, workflowId: `bench-flights-${label}-${Date.now()}`, args: [{ featureView: 'flight_delays', model: 'flight_delay', ...split, ...input }] });
  const result = await train('gbdt', { params: FLIGHTS_CHAIN.training.params ?? {} });
  ctx.log('flights model (gbdt)', { metrics: result.metrics, training: result.training, rows: result.rowCounts });
  const mlp = await train('mlp', { params: { hiddenUnits: [64, 32], epochs: 4, batchSize: 1024, learningRate: 0.001, seed: 1 }, trainingDatasetId: result.trainingDatasetId });
  ctx.log('flights model (mlp)', { metrics: mlp.metrics, training: mlp.training });
  const best = figures.reduce<Figure | undefined>((a, f) => (a && a.value >= f.value ? a : f), undefined);
  figures.unshift({
    name: 'training_samples_per_s',
    value: Math.round(mlp.training.samplesPerSecond),
    unit: 'samples/s',
    rows: mlp.rowCounts.train,
    details: {
      backend: mlp.training.tfjsBackend,
      device: mlp.training.device,
      of: 'the flights MLP in the real training pipeline (GPU worker default backend), over its 4 epochs',
      // Per stage: the first epoch reads the splits from Postgres; later ones replay them when the run kept them (FTI_EPOCH_CACHE_MB).
      epochSamplesPerSecond: mlp.training.epochSamplesPerSecond,
      trainingSeconds: round(mlp.training.trainingSeconds, 1),
      fastestBackendHere: best?.details?.backend,
    },
  });
  const common = { train: 'Jan 1 - May 25 2001', validation: 'May 25 - Jun 1', test: 'June 2001', trainingDatasetId: result.trainingDatasetId };
  figures.push({
    name: 'auc',
    value: round(result.metrics.auc ?? Number.NaN, 4),
    unit: 'auc',
    rows: result.rowCounts.test,
    details: { ...common, model: 'gradient-boosted trees (the example\'s params)', params: FLIGHTS_CHAIN.training.params, metrics: result.metrics, rounds: result.training.epochs, trainingSeconds: round(result.training.trainingSeconds, 1), modelVersion: result.version },
  });
  figures.push({
    name: 'auc_mlp',
    value: round(mlp.metrics.auc ?? Number.NaN, 4),
    unit: 'auc',
    rows: mlp.rowCounts.test,
    details: { ...common, model: '64-32 MLP, 4 epochs', backend: mlp.training.tfjsBackend, metrics: mlp.metrics, trainingSeconds: round(mlp.training.trainingSeconds, 1), modelVersion: mlp.version },
  });

  // The reference GBDT on the same dataset (same rows, splits and features).
  const projectAuc = result.metrics.auc ?? Number.NaN;
  const dataset = await new TrainingStore({ knex: ctx.knex }).dataset(result.trainingDatasetId);
  const datasetView = (await new FeatureStore({ knex: ctx.knex }).view(result.featureView.name, result.featureView.version)).definition;
  const reference = await referenceGbdt(ctx, dataset, datasetView);
  ctx.log('reference GBDT', reference);
  const same = { trainingDatasetId: dataset.id, featureView: result.featureView, projectModel: `gradient-boosted trees, version ${result.version}`, projectAuc: round(projectAuc, 4), mlpAuc: round(mlp.metrics.auc ?? Number.NaN, 4) };
  if (reference.ok) {
    const r = reference.result;
    figures.push({
      name: 'auc_gap_to_reference',
      value: round(r.auc - projectAuc, 4),
      unit: 'auc',
      rows: r.rows,
      details: {
        ...same,
        referenceAuc: round(r.auc, 4),
        reference: `scikit-learn ${String(r.sklearn)} HistGradientBoostingClassifier`,
        referenceValidationAuc: round(r.validationAuc, 4),
        iterations: r.iterations,
        earlyStopping: r.earlyStopping,
        params: r.params,
        encoding: 'origin: the project model\'s one-hot categories as one categorical feature (others: one "other" category); numbers as given, hour and weekday raw (no sin/cos), NaN where the join found nothing',
        rows: { train: r.trainRows, validation: r.validationRows, test: r.rows },
        seconds: { export: round(reference.exportSeconds, 1), read: r.readSeconds, fit: r.fitSeconds, total: round(reference.totalSeconds, 1) },
        python: reference.python,
      },
    });
  } else {
    figures.push({ name: 'auc_gap_to_reference', value: Number.NaN, unit: 'auc', details: { ...same, unavailable: reference.reason } });
  }
  return figures;
};

export default trainingPart;
