/**
 * Writes the training benchmark's throughput split (one week of flights, as
 * bench/parts/training.ts makes it, or BENCH_DATASET_ID) to a batches file:
 *
 *   DATABASE_URL=… FTI_SCHEMA=fti_bench node --import tsx bench/portable/export.ts .fti/scratch/week
 *
 * The bench's flights fixture must be in that schema (any `npm run bench` leaves it).
 */
import { loadConfig } from '../../core/config.ts';
import { createEncoder, fitSignature } from '../../ml/encoding.ts';
import { createKnex } from '../../registry/db/index.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { datasetAndView, featureSpecs, splitBatches } from '../../activities/training-run.ts';
import { flightDelays } from '../../examples/flights/definitions.ts';
import { THROUGHPUT_WEEK } from '../flights-fixture.ts';
import { writeBatchesFile } from './batches-file.ts';

const base = process.argv[2];
if (!base) throw new Error('usage: export.ts <output base path>');
const config = loadConfig();
const knex = createKnex({ url: process.env.DATABASE_URL ?? '', schema: config.schema });
try {
  const stores = { features: new FeatureStore({ knex }), training: new TrainingStore({ knex }) };
  const view = await stores.features.registerView(flightDelays);
  const id = process.env.BENCH_DATASET_ID
    ? Number(process.env.BENCH_DATASET_ID)
    : (await stores.training.createDataset(view, { idempotencyKey: 'portable-week', ...THROUGHPUT_WEEK })).id;
  const { dataset, view: definition } = await datasetAndView(stores, id);
  const signature = fitSignature(featureSpecs(definition), dataset.statistics, { name: definition.label.name, kind: definition.outputKind });
  const encoder = createEncoder(signature);
  const meta = await writeBatchesFile(base, { width: encoder.width, outputKind: definition.outputKind, source: `training dataset ${dataset.id} (${definition.name}), train split, shuffled as epoch 1` }, splitBatches(stores.training, dataset, definition, 'train', encoder, 512, true)(1));
  console.log(JSON.stringify(meta));
} finally {
  await knex.destroy();
}
