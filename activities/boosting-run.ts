/**
 * One gradient-boosted tree run over a training dataset (the `gbdt` family): read the
 * train and validation splits into memory in the tree encodings (each up to the
 * params' maxRows, a uniform sample of a larger split), boost with early
 * stopping on validation, checkpoint the trees every few rounds. A retry continues
 * from the last checkpoint; boosting is deterministic, so it ends with the trees an
 * uninterrupted run would have.
 */
import { createEncoder, fitSignature, type Encoder } from '../ml/encoding.ts';
import { boost, type EncodedRows, type GbdtParams } from '../ml/gbdt/boost.ts';
import { ensembleArtifact, ensembleFromArtifact } from '../ml/gbdt/ensemble.ts';
import type { EpochProgress } from '../ml/train.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import { toBatches } from '../ml/batches.ts';
import type { Split, StoredCheckpoint, TrainingDataset, TrainingStore } from '../registry/training/index.ts';
import { datasetAndView, featureSpecs, type TrainingRunStores, type TrainOnDatasetResult } from './training-run.ts';

export interface BoostOnDatasetOptions {
  stores: TrainingRunStores;
  trainingDatasetId: number;
  params: GbdtParams;
  resume?: StoredCheckpoint;
  log?: (message: string, attrs?: Record<string, unknown>) => void;
  /** While the splits are read (heartbeat here) and after every round. */
  onProgress?: (progress: { stage: 'read'; split: Split; rows: number } | { stage: 'boost'; round: EpochProgress }) => void;
  /** Every few rounds and at the end; `snapshot()` is the checkpoint to store. */
  onCheckpoint?: (round: EpochProgress, snapshot: () => Omit<StoredCheckpoint, 'runKey'>) => Promise<void>;
  shouldStop?: () => boolean;
}

export async function boostOnDataset(options: BoostOnDatasetOptions): Promise<TrainOnDatasetResult> {
  const { stores, params, resume } = options;
  const started = Date.now();
  const { dataset, view } = await datasetAndView(stores, options.trainingDatasetId);
  const signature = resume?.signature ?? fitSignature(featureSpecs(view), dataset.statistics, { name: view.label.name, kind: view.outputKind }, 'gbdt');
  const encoder = createEncoder(signature);
  const read = (split: Split) => readSplit(stores.training, dataset, view, split, encoder, params.maxRows, (rows) => options.onProgress?.({ stage: 'read', split, rows }));
  const train = await read('train');
  const validation = dataset.rowCounts.validation > 0 ? await read('validation') : undefined;
  options.log?.('boosting', { dataset: dataset.id, rows: dataset.rowCounts, trainRows: train.rows, validationRows: validation?.rows ?? 0, width: encoder.width, resumedFromRound: resume?.checkpoint.epoch ?? 0 });
  const result = await boost({
    train,
    ...(validation ? { validation } : {}),
    width: encoder.width,
    categories: signature.inputs.map((i) => (i.encoding.kind === 'category' ? i.encoding.categories.length : 0)),
    outputKind: view.outputKind,
    params,
    ...(resume ? { resume: { ensemble: ensembleFromArtifact(resume.checkpoint.artifact), history: resume.history } } : {}),
    onRound: (round) => options.onProgress?.({ stage: 'boost', round }),
    onCheckpoint: async (round, snapshot, history) => options.onCheckpoint?.(round, () => ({ checkpoint: { epoch: round.epoch, artifact: ensembleArtifact(snapshot()) }, signature, history: [...history] })),
    shouldStop: options.shouldStop,
  });
  // The model is the trees up to the best validation round; its checkpoint says so, and a
  // retry from it boosts the same rounds after it again and stops where this run did.
  const kept = result.history.slice(0, result.bestRound);
  const best = kept.at(-1);
  if (best && !result.stoppedEarly) await options.onCheckpoint?.(best, () => ({ checkpoint: { epoch: result.bestRound, artifact: ensembleArtifact(result.ensemble) }, signature, history: kept }));
  return {
    history: kept,
    lastEpoch: result.bestRound,
    resumedFromEpoch: resume?.checkpoint.epoch ?? 0,
    stoppedEarly: result.stoppedEarly,
    samplesPerSecond: result.samplesPerSecond,
    trainingRows: train.rows,
    seconds: (Date.now() - started) / 1000,
    signature,
  };
}

/** A split's first `maxRows` rows in the dataset's stored order (the whole split when it is smaller), encoded, in memory. */
async function readSplit(training: TrainingStore, dataset: TrainingDataset, view: FeatureViewDefinition, split: Split, encoder: Encoder, maxRows: number, onRows: (rows: number) => void): Promise<EncodedRows> {
  const recorded = dataset.rowCounts[split];
  const expected = Math.min(recorded, maxRows);
  const x = new Float32Array(expected * encoder.width);
  const y = new Float32Array(expected);
  let rows = 0;
  const columns = [...view.features.map((f) => f.name), view.label.name];
  for await (const batch of toBatches(training.streamSplit(dataset, split, columns, READ_BATCH), encoder, { label: view.label.name, batchSize: READ_BATCH })) {
    if (rows + batch.size > recorded) throw new Error(`the ${split} split of dataset ${dataset.id} has more rows than its recorded ${recorded}`);
    const taken = Math.min(batch.size, expected - rows);
    x.set(batch.x.subarray(0, taken * encoder.width), rows * encoder.width);
    y.set(batch.y.subarray(0, taken), rows);
    rows += taken;
    onRows(rows);
    // Leaving the loop closes the split's cursors.
    if (rows === expected && expected < recorded) break;
  }
  if (rows !== expected) throw new Error(`the ${split} split of dataset ${dataset.id} has ${rows} rows, not its recorded ${recorded}`);
  return { x, y, rows };
}

const READ_BATCH = 16_384;
