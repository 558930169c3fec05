/**
 * Child process of the training benchmark: one TensorFlow.js backend per process
 * (tfjs has one global engine), forced with FTI_TFJS_BACKEND. Trains on a training
 * dataset through the same code path as the GPU pool's train activity and prints
 * one JSON line: { backend, device, samplesPerSecond, epochs }.
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
    const rates = run.history.map((h) => h.samplesPerSecond);
    const steady = rates.length > 1 ? rates.slice(1) : rates;
    const sorted = [...steady].sort((a, b) => a - b);
    console.log(JSON.stringify({ backend: backend.name, device: backend.device, samplesPerSecond: Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0), epochs: run.lastEpoch }));
  } finally {
    await knex.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
