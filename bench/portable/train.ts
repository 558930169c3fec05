/**
 * Training throughput from a batches file (export.ts), on the backend the GPU pool
 * picks by itself (ml/backend.ts; FTI_TFJS_BACKEND forces one): the bench's model
 * (64-32 MLP, seed 1) fitted on the same rows held in memory, for each batch size in
 * BATCH_SIZES. One JSON line per batch size: samples/s as the median of the epochs
 * after the first (which compiles shaders), and the last epoch's loss, so two
 * backends can be checked to learn the same thing. Bundled by kit.sh to run with a
 * bare `node`.
 */
import { loadBackend } from '../../ml/backend.ts';
import { MlpParamsSchema } from '../../ml/model.ts';
import { steadyMedian, trainOnHeldBatches } from '../held-training.ts';
import type { BackendName } from '../../ml/backend.ts';
import { readBatchesFile } from './batches-file.ts';

const base = process.argv[2];
if (!base) throw new Error('usage: train <batches file base path>');
const forced = process.env.FTI_TFJS_BACKEND as BackendName | undefined;
const backend = await loadBackend('gpu', forced || undefined);
console.log(JSON.stringify({ backend: backend.name, device: backend.device, skipped: backend.skipped }));
const { meta, batches } = await readBatchesFile(base);
const epochs = Number(process.env.EPOCHS ?? 3);
for (const batchSize of (process.env.BATCH_SIZES ?? '512').split(',').map(Number)) {
  const params = MlpParamsSchema.parse({ family: 'mlp', epochs, batchSize, hiddenUnits: [64, 32], seed: 1 });
  const history = await trainOnHeldBatches(backend, batches(batchSize), params, meta.width, meta.outputKind);
  console.log(
    JSON.stringify({
      backend: backend.name,
      batchSize,
      rows: meta.rows,
      samplesPerSecond: Math.round(steadyMedian(history, (h) => h.samplesPerSecond)),
      epochSeconds: history.map((h) => Math.round(h.seconds * 1000) / 1000),
      losses: history.map((h) => Math.round(h.loss * 1e5) / 1e5),
    }),
  );
}
