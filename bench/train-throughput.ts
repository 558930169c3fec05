/**
 * Child process of the training benchmark: one TensorFlow.js backend per process
 * (tfjs has one global engine), forced with FTI_TFJS_BACKEND. Trains on a training
 * dataset through the same code path as the GPU pool's train activity and prints
 * one JSON line: { backend, device, samplesPerSecond, waitShare, inMemorySamplesPerSecond, epochs };
 * inMemorySamplesPerSecond is the same model trained on the same batches held in memory (the baseline).
 */
import { loadConfig } from '../core/config.ts';
import { loadBackend, type LoadedBackend } from '../ml/backend.ts';
import type { Batch } from '../ml/batches.ts';
import { createEncoder } from '../ml/encoding.ts';
import { MlpParamsSchema, type MlpParams } from '../ml/model.ts';
import type { ModelSignature } from '../ml/signature.ts';
import type { EpochProgress } from '../ml/train.ts';
import { createKnex } from '../registry/db/index.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import { datasetAndView, splitBatches, trainOnDataset, type TrainingRunStores } from '../activities/training-run.ts';
import { steadyMedian, trainOnHeldBatches } from './held-training.ts';

async function main(): Promise<void> {
  const config = loadConfig();
  const datasetId = Number(process.env.BENCH_DATASET_ID);
  const backend = await loadBackend('gpu', config.tfjsBackend);
  const knex = createKnex({ url: process.env.DATABASE_URL ?? '', schema: config.schema });
  try {
    const stores = { features: new FeatureStore({ knex }), training: new TrainingStore({ knex }) };
    const params = MlpParamsSchema.parse({ family: 'mlp', epochs: Number(process.env.BENCH_EPOCHS ?? 2), batchSize: 512, hiddenUnits: [64, 32], seed: 1 });
    const run = await trainOnDataset({ stores, backend, trainingDatasetId: datasetId, params, epochCacheBytes: config.epochCacheMb * 2 ** 20 });
    const floor = await inMemoryRun(stores, backend, datasetId, params, run.signature);
    console.log(
      JSON.stringify({
        backend: backend.name,
        device: backend.device,
        samplesPerSecond: Math.round(steadyMedian(run.history, (h) => h.samplesPerSecond)),
        // Where an epoch's time went: waiting for batches (reading training did not hide), the rest training.
        waitShare: Math.round(1000 * steadyMedian(run.history, (h) => h.waitSeconds / Math.max(h.seconds, 1e-9))) / 1000,
        inMemorySamplesPerSecond: Math.round(steadyMedian(floor, (h) => h.samplesPerSecond)),
        epochs: run.lastEpoch,
      }),
    );
  } finally {
    await knex.destroy();
  }
}

/**
 * The baseline: the same model trained on the same train split's batches held in memory,
 * read once beforehand: training with no reading at all, the floor that reading on a
 * thread can approach.
 */
async function inMemoryRun(stores: TrainingRunStores, backend: LoadedBackend, datasetId: number, params: MlpParams, signature: ModelSignature): Promise<EpochProgress[]> {
  const { dataset, view } = await datasetAndView(stores, datasetId);
  const encoder = createEncoder(signature);
  const held: Batch[] = [];
  for await (const batch of splitBatches(stores.training, dataset, view, 'train', encoder, params.batchSize, true)(1)) held.push(batch);
  return trainOnHeldBatches(backend, held, params, encoder.width, view.outputKind);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
