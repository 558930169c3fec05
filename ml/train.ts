/**
 * The training loop: model.fitDataset over a tf.data.generator that wraps the
 * caller's async iterable of batches, so rows stream from a cursor and memory does
 * not grow with the dataset. Each completed epoch is reported through onEpochEnd
 * (where the activity heartbeats and checkpoints); a resume starts at initialEpoch;
 * shouldStop ends training within one batch.
 *
 * tf.data.generator (tfjs 4.22) accepts an async iterator: its FunctionCallIterator
 * returns `gen.next()`'s promise as is. fitDataset asks the dataset for a fresh
 * iterator every epoch, which calls trainBatches(epoch) anew.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Tf } from './backend.ts';
import { readAhead } from '../core/streams.ts';
import type { Batch } from './batches.ts';
import { invalid } from '../core/errors.ts';
import { modelInputWidth } from './model.ts';

export interface EpochProgress {
  /** 1-based and absolute: after a resume at initialEpoch 2 the first report is epoch 3. */
  epoch: number;
  epochs: number;
  /** Mean training loss over the epoch's batches (including any L2 penalty). */
  loss: number;
  /** Loss over validationBatches with the epoch's final weights, when given. */
  valLoss?: number;
  samples: number;
  /** Wall time of the epoch's training pass (reading batches included, validation not). */
  seconds: number;
  /** Of `seconds`, the time the trainer sat waiting for its next batch: reading that training did not hide. */
  waitSeconds: number;
  samplesPerSecond: number;
}

export interface TrainOptions {
  tf: Tf;
  /** A compiled model (buildModel, or restoreCheckpoint on a resume). */
  model: tf.LayersModel;
  /** Total epochs, counting those done before a resume. */
  epochs: number;
  /** A fresh pass over the training split; `epoch` is 1-based (seed a shuffle with it). */
  trainBatches: (epoch: number) => AsyncIterable<Batch>;
  validationBatches?: (epoch: number) => AsyncIterable<Batch>;
  /** Epochs already done; the caller restored the model from that epoch's checkpoint. */
  initialEpoch?: number;
  /** Awaited after every completed epoch, before the next one starts. Throwing aborts training. */
  onEpochEnd?: (progress: EpochProgress) => Promise<void> | void;
  /**
   * Called (synchronously, no tensor reads) as each training batch is read. Temporal
   * delivers cancellation only in heartbeat responses, so an activity that wants
   * shouldStop to react within an epoch heartbeats here too (the SDK throttles it).
   */
  onBatch?: (progress: BatchProgress) => void;
  /** The same, as each validation batch is read: validation of a large split takes as long as an epoch's share of it. */
  onValidationBatch?: (progress: { epoch: number; batches: number }) => void;
  /** Polled before every batch and after every epoch; true stops training. */
  shouldStop?: () => boolean;
}

export interface BatchProgress {
  /** 1-based and absolute, as in EpochProgress. */
  epoch: number;
  /** Batches read so far in this epoch. */
  batches: number;
  /** Rows read so far in this epoch. */
  samples: number;
}

export interface TrainResult {
  /** Completed epochs of this call. A stop mid-epoch leaves that epoch out: it was never reported or checkpointed. */
  history: EpochProgress[];
  epochsRun: number;
  /** Epochs completed in total, initialEpoch included. */
  lastEpoch: number;
  /** True when shouldStop ended training before `epochs`. The model then holds part of an unreported epoch. */
  stoppedEarly: boolean;
  /** Over all epochs of this call. */
  samplesPerSecond: number;
}

type TensorBatch = { xs: tf.Tensor2D; ys: tf.Tensor2D };

export async function trainModel(options: TrainOptions): Promise<TrainResult> {
  const { tf: tfjs, model, epochs } = options;
  const initialEpoch = options.initialEpoch ?? 0;
  if (!Number.isInteger(epochs) || epochs < 1) throw invalid(`epochs must be a positive integer, got ${epochs}`);
  if (!Number.isInteger(initialEpoch) || initialEpoch < 0 || initialEpoch > epochs) throw invalid(`initialEpoch must be an integer in [0, ${epochs}], got ${initialEpoch}`);
  const width = modelInputWidth(model);
  const history: EpochProgress[] = [];
  // A retry after the last epoch's checkpoint but before the activity completed.
  if (initialEpoch === epochs) return summarize(history, initialEpoch, false);

  let stopRequested = false;
  const stopNow = (): boolean => {
    if (!stopRequested && options.shouldStop?.()) {
      stopRequested = true;
      model.stopTraining = true;
    }
    return stopRequested;
  };

  let epochIndex = initialEpoch; // 0-based, the epoch in progress
  let samples = 0;
  let batches = 0;
  let started = 0;
  let waited = 0;

  // Generator bodies run on the first next(), not when created: fitDataset creates one
  // iterator it never reads, and that must not open a cursor.
  async function* trainTensors(): AsyncGenerator<TensorBatch, void, undefined> {
    if (stopNow()) return;
    const source = readAhead(options.trainBatches(epochIndex + 1));
    try {
      for (;;) {
        // Resumed when fitDataset wants the next batch: until it is here, training waits.
        const asked = performance.now();
        const next = await source.next();
        waited += performance.now() - asked;
        if (next.done) return;
        const batch = next.value;
        if (stopNow()) return; // ends the epoch early; onEpochEnd below skips it
        if (batch.size === 0) continue;
        checkBatch(batch, width, 'training');
        samples += batch.size;
        batches += 1;
        options.onBatch?.({ epoch: epochIndex + 1, batches, samples });
        yield toTensors(tfjs, batch, width);
      }
    } finally {
      // As a for-await would: closing readAhead closes the caller's source (a no-op once it ended or threw).
      await source.return();
    }
  }
  async function* validationTensors(read: (epoch: number) => AsyncIterable<Batch>): AsyncGenerator<TensorBatch, void, undefined> {
    let validationBatches = 0;
    for await (const batch of readAhead(read(epochIndex + 1))) {
      if (batch.size === 0) continue;
      checkBatch(batch, width, 'validation');
      validationBatches += 1;
      options.onValidationBatch?.({ epoch: epochIndex + 1, batches: validationBatches });
      yield toTensors(tfjs, batch, width);
    }
  }

  // fitDataset abandons a suspended iterator when training stops or fails mid-epoch;
  // closing it runs readAhead's cleanup, which closes the caller's source.
  const created: AsyncGenerator<TensorBatch, void, undefined>[] = [];
  const track = (gen: AsyncGenerator<TensorBatch, void, undefined>) => {
    created.push(gen);
    return gen;
  };
  const trainSet = tfjs.data.generator(() => track(trainTensors()));
  const validationBatches = options.validationBatches;
  const validationSet = validationBatches && tfjs.data.generator(() => track(validationTensors(validationBatches)));

  try {
    await model.fitDataset(trainSet, {
      epochs,
      initialEpoch,
      verbose: 0,
      // Validation runs here rather than through fitDataset's validationData, so a
      // stopped epoch skips it.
      callbacks: {
        onEpochBegin: async (epoch) => {
          epochIndex = epoch;
          samples = 0;
          batches = 0;
          waited = 0;
          started = performance.now();
        },
        onEpochEnd: async (epoch, logs) => {
          if (stopRequested) return;
          const seconds = (performance.now() - started) / 1000;
          if (samples === 0) throw invalid(`epoch ${epoch + 1}: the training split produced no rows`);
          const loss = logs?.['loss'];
          if (loss === undefined || !Number.isFinite(loss)) {
            throw invalid(`training diverged: loss is ${loss} after epoch ${epoch + 1} (try a lower learningRate)`, { epoch: epoch + 1 });
          }
          const valLoss = validationSet ? await evaluateLoss(tfjs, model, validationSet) : undefined;
          const progress: EpochProgress = {
            epoch: epoch + 1,
            epochs,
            loss,
            ...(valLoss === undefined ? {} : { valLoss }),
            samples,
            seconds,
            waitSeconds: waited / 1000,
            samplesPerSecond: samples / Math.max(seconds, 1e-9),
          };
          history.push(progress);
          await options.onEpochEnd?.(progress);
          stopNow();
        },
      },
    });
  } finally {
    for (const gen of created) await gen.return().catch(() => undefined);
  }
  const lastEpoch = initialEpoch + history.length;
  return summarize(history, lastEpoch, stopRequested && lastEpoch < epochs);
}

function checkBatch({ x, y, size }: Batch, width: number, which: string): void {
  if (!Number.isInteger(size) || size < 0 || x.length !== size * width || y.length !== size) {
    throw invalid(`${which} batch: expected ${size}×${width} x values and ${size} labels, got ${x.length} and ${y.length}`);
  }
}

/** fitDataset and evaluateDataset dispose these after the step. */
function toTensors(tfjs: Tf, { x, y, size }: Batch, width: number): TensorBatch {
  return { xs: tfjs.tensor2d(x, [size, width]), ys: tfjs.tensor2d(y, [size, 1]) };
}

async function evaluateLoss(tfjs: Tf, model: tf.LayersModel, dataset: tf.data.Dataset<TensorBatch>): Promise<number | undefined> {
  const out = await model.evaluateDataset(dataset, {});
  const scalars = Array.isArray(out) ? out : [out];
  try {
    const loss = scalars[0]; // absent when the validation split is empty
    return loss ? (await loss.data())[0] : undefined;
  } finally {
    tfjs.dispose(scalars);
  }
}

function summarize(history: EpochProgress[], lastEpoch: number, stoppedEarly: boolean): TrainResult {
  const samples = history.reduce((n, p) => n + p.samples, 0);
  const seconds = history.reduce((n, p) => n + p.seconds, 0);
  return { history, epochsRun: history.length, lastEpoch, stoppedEarly, samplesPerSecond: seconds > 0 ? samples / seconds : 0 };
}
