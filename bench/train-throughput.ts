/**
 * Child process of the training benchmark: one TensorFlow.js backend per process
 * (tfjs has one global engine), forced with FTI_TFJS_BACKEND. Trains on a training
 * dataset through the same code path as the GPU pool's train activity and prints
 * one JSON line: { backend, device, samplesPerSecond, waitShare, epochs }.
 */
import { loadConfig } from '../core/config.ts';
import { loadBackend } from '../ml/backend.ts';
import { MlpParamsSchema } from '../ml/model.ts';
import { createKnex } from '../registry/db/index.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import { trainOnDataset } from '../activities/training-run.ts';

async function main(): Promise<void> {
  const config = loadConfig();
  const datasetId = Number(process.env.BENCH_DATASET_ID);
  const backend = await loadBackend('gpu', config.tfjsBackend);
  const knex = createKnex({ url: process.env.DATABASE_URL ?? '', schema: config.schema });
  try {
    const run = await trainOnDataset({
      stores: { features: new FeatureStore({ knex }), training: new TrainingStore({ knex }) },
      backend,
      trainingDatasetId: datasetId,
      params: MlpParamsSchema.parse({ family: 'mlp', epochs: Number(process.env.BENCH_EPOCHS ?? 2), batchSize: 512, hiddenUnits: [64, 32], seed: 1 }),
    });
    // The first epoch warms up (shader compilation, JIT): report the median of the rest when there are any.
    const steady = run.history.length > 1 ? run.history.slice(1) : run.history;
    const middle = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    console.log(
      JSON.stringify({
        backend: backend.name,
        device: backend.device,
        samplesPerSecond: Math.round(middle(steady.map((h) => h.samplesPerSecond))),
        // Where an epoch's time went: waiting for batches (reading training did not hide), the rest training.
        waitShare: Math.round(1000 * middle(steady.map((h) => h.waitSeconds / Math.max(h.seconds, 1e-9)))) / 1000,
        epochs: run.lastEpoch,
      }),
    );
  } finally {
    await knex.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
