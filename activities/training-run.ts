/**
 * One training run over a training dataset: fit the signature on the train split's
 * statistics (or take it from the checkpoint being resumed), build or restore the
 * model, and stream shuffled batches from Postgres through the training loop. The
 * GPU pool's train activity and the training benchmark both call this.
 */
import { FtiError, FailureType } from '../core/errors.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import type { LoadedBackend } from '../ml/backend.ts';
import { toBatches } from '../ml/batches.ts';
import { EpochCache, splitsKept } from '../ml/epoch-cache.ts';
import { checkpointOf, restoreCheckpoint } from '../ml/checkpoint.ts';
import { createEncoder, fitSignature, type Encoder } from '../ml/encoding.ts';
import type { FeatureSpec } from '../ml/feature-spec.ts';
import { buildModel, type MlpParams } from '../ml/model.ts';
import type { ModelSignature } from '../ml/signature.ts';
import { trainModel, type BatchProgress, type EpochProgress } from '../ml/train.ts';
import type { FeatureStore } from '../registry/feature-store/index.ts';
import { SplitReader } from './split-reader.ts';
import type { Split, StoredCheckpoint, TrainingDataset, TrainingStore } from '../registry/training/index.ts';

/** The stores a training run reads: the dataset from training, its view from the feature store. */
export interface TrainingRunStores {
  features: FeatureStore;
  training: TrainingStore;
}

const SHUFFLE_BUFFER = 8192;

export interface TrainOnDatasetOptions {
  stores: TrainingRunStores;
  backend: LoadedBackend;
  trainingDatasetId: number;
  params: MlpParams;
  /** A checkpoint of this run to continue from. */
  resume?: StoredCheckpoint;
  log?: (message: string, attrs?: Record<string, unknown>) => void;
  onBatch?: (progress: BatchProgress, history: EpochProgress[]) => void;
  /** As each validation batch is read (heartbeat here: validation is long on a large split). */
  onValidationBatch?: (progress: { epoch: number; batches: number }) => void;
  /** After each epoch; `snapshot()` captures the checkpoint to store. */
  onEpochEnd?: (epoch: EpochProgress, snapshot: () => Promise<Omit<StoredCheckpoint, 'runKey'>>) => Promise<void>;
  shouldStop?: () => boolean;
  /**
   * Read the train and validation splits on a thread of their own (split-reader.ts), so
   * reading overlaps training. Default: when the train split has READER_THREAD_ROWS rows
   * or more (below that the thread's start costs more than it saves).
   */
  readOnThread?: boolean;
  /**
   * Bytes of encoded rows the run may keep in memory so that epochs after the first
   * replay the train and validation splits instead of reading them again (epoch-cache.ts;
   * FTI_EPOCH_CACHE_MB). 0: read every epoch. Default: none kept.
   */
  epochCacheBytes?: number;
}

/** Train-split rows from which a run reads on a thread by default (~0.4 s of reading an epoch; the thread starts in ~0.5 s). */
export const READER_THREAD_ROWS = 50_000;

export interface TrainOnDatasetResult {
  history: EpochProgress[];
  lastEpoch: number;
  resumedFromEpoch: number;
  stoppedEarly: boolean;
  samplesPerSecond: number;
  /** The train split's rows the model was fitted on (fewer than the split's when gbdt's maxRows sampled it). */
  trainingRows: number;
  seconds: number;
  signature: ModelSignature;
}

export async function trainOnDataset(options: TrainOnDatasetOptions): Promise<TrainOnDatasetResult> {
  const { stores, backend, params, resume } = options;
  const tf = backend.tf;
  const started = Date.now();
  const { dataset, view } = await datasetAndView(stores, options.trainingDatasetId);
  const signature = resume?.signature ?? fitSignature(featureSpecs(view), dataset.statistics, { name: view.label.name, kind: view.outputKind });
  const encoder = createEncoder(signature);
  const { epochs: _epochs, batchSize: _batchSize, family: _family, ...spec } = params;
  const model = resume ? await restoreCheckpoint(tf, resume.checkpoint, spec, view.outputKind) : buildModel(tf, spec, encoder.width, view.outputKind);
  const initialEpoch = resume?.checkpoint.epoch ?? 0;
  const history = [...(resume?.history ?? [])];
  const onThread = options.readOnThread ?? dataset.rowCounts.train >= READER_THREAD_ROWS;
  const epochCacheBytes = options.epochCacheBytes ?? 0;
  options.log?.('training', { dataset: dataset.id, rows: dataset.rowCounts, width: encoder.width, backend: backend.name, resumedFromEpoch: initialEpoch, readerThread: onThread, keptAfterFirstEpoch: splitsKept(epochCacheBytes, encoder.width, [['train', dataset.rowCounts.train], ['validation', dataset.rowCounts.validation]]) });
  const reader = onThread ? new SplitReader({ ...stores.training.database(), trainingDatasetId: dataset.id, signature, batchSize: params.batchSize, epochCacheBytes }) : undefined;
  const cache = reader ? undefined : new EpochCache<Split>(epochCacheBytes);
  const passes = (split: Split, shuffle: boolean) => (reader ? (epoch: number) => reader.batches(split, epoch, shuffle) : splitBatches(stores.training, dataset, view, split, encoder, params.batchSize, shuffle, cache));
  try {
    const result = await trainModel({
      tf,
      model,
      epochs: params.epochs,
      initialEpoch,
      trainBatches: passes('train', true),
      validationBatches: dataset.rowCounts.validation > 0 ? passes('validation', false) : undefined,
      onBatch: (p) => options.onBatch?.(p, history),
      onValidationBatch: options.onValidationBatch,
      shouldStop: options.shouldStop,
      onEpochEnd: async (p) => {
        history.push(p);
        await options.onEpochEnd?.(p, async () => ({ checkpoint: await checkpointOf(tf, model, p.epoch), signature, history: [...history] }));
      },
    });
    return {
      history,
      lastEpoch: result.lastEpoch,
      resumedFromEpoch: initialEpoch,
      stoppedEarly: result.stoppedEarly,
      samplesPerSecond: result.samplesPerSecond,
      trainingRows: dataset.rowCounts.train,
      seconds: (Date.now() - started) / 1000,
      signature,
    };
  } finally {
    await reader?.close();
    model.dispose();
  }
}

export async function datasetAndView(stores: TrainingRunStores, trainingDatasetId: number): Promise<{ dataset: TrainingDataset; view: FeatureViewDefinition }> {
  const dataset = await stores.training.dataset(trainingDatasetId);
  const view = (await stores.features.viewById(dataset.featureViewId)).definition;
  return { dataset, view };
}

/**
 * A pass over one split as encoded batches (shuffled through a buffer, seeded by the
 * epoch, for training): read from Postgres, and kept in `cache` when it fits, so the next
 * pass replays it (the same batches either way).
 */
export function splitBatches(training: TrainingStore, dataset: TrainingDataset, view: FeatureViewDefinition, split: Split, encoder: Encoder, batchSize: number, shuffle: boolean, cache?: EpochCache<Split>) {
  const columns = [...view.features.map((f) => f.name), view.label.name];
  const label = view.label.name;
  return (epoch: number) => {
    const order = shuffle ? { shuffleBuffer: SHUFFLE_BUFFER, seed: epoch } : {};
    const read = () => training.streamSplit(dataset, split, columns, batchSize * 4);
    return cache?.pass(split, { rows: dataset.rowCounts[split], read }, encoder, label, { batchSize, ...order }) ?? toBatches(read(), encoder, { label, batchSize, ...order });
  };
}

/** What the model is trained on: one spec per feature of the view, in the view's order. */
export function featureSpecs(view: FeatureViewDefinition): FeatureSpec[] {
  return view.features.map((f): FeatureSpec => {
    switch (f.encoding.encoding) {
      case 'standardize':
        if (f.dtype === 'string') throw new FtiError(FailureType.InvalidInput, `feature ${f.name} is text; it must be one_hot encoded`);
        return { name: f.name, dtype: f.dtype, encoding: 'standardize', missingIndicator: f.encoding.missingIndicator ?? false };
      case 'one_hot':
        return { name: f.name, dtype: f.dtype, encoding: 'one_hot', ...(f.encoding.maxCategories ? { maxCategories: f.encoding.maxCategories } : {}) };
      case 'bins':
        if (f.dtype === 'string') throw new FtiError(FailureType.InvalidInput, `feature ${f.name} is text; it must be one_hot encoded`);
        return { name: f.name, dtype: f.dtype, encoding: 'bins', bins: f.encoding.bins ?? 16, missingIndicator: f.encoding.missingIndicator ?? false };
      case 'cyclical':
        if (f.dtype !== 'float' && f.dtype !== 'int') throw new FtiError(FailureType.InvalidInput, `feature ${f.name} must be numeric for cyclical encoding`);
        return { name: f.name, dtype: f.dtype, encoding: 'cyclical', period: f.encoding.period };
    }
  });
}
