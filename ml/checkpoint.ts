/**
 * Training checkpoints: the model after N completed epochs plus Adam's state (step
 * count and both moment estimates), so a retry continues the same optimisation
 * instead of restarting Adam's bias correction and momentum from zero.
 *
 * A checkpoint is data (bytes + JSON) for the caller to store; only a reference to
 * it belongs in a heartbeat.
 */
import type * as tf from '@tensorflow/tfjs';
import { FailureType, FtiError, invalid } from '../core/errors.ts';
import { artifactFromModel, modelFromArtifact, type ModelArtifact } from './artifact.ts';
import type { Tf } from './backend.ts';
import { compileModel, type ModelSpecInput, type OutputKind } from './model.ts';

/** Named tensors as tf.io encodes them: a manifest and the concatenated bytes. */
export interface SerializedWeights {
  specs: tf.io.WeightsManifestEntry[];
  data: Uint8Array;
}

export interface Checkpoint {
  /** Epochs completed: resume with `initialEpoch: checkpoint.epoch`. */
  epoch: number;
  artifact: ModelArtifact;
  /** Optimizer state in `optimizer.getWeights()` order; absent for optimizers that cannot export it. */
  optimizer?: SerializedWeights;
}

export async function checkpointOf(tfjs: Tf, model: tf.LayersModel, epoch: number): Promise<Checkpoint> {
  const artifact = await artifactFromModel(tfjs, model);
  const optimizer = await optimizerState(tfjs, model.optimizer);
  return optimizer ? { epoch, artifact, optimizer } : { epoch, artifact };
}

/**
 * A compiled model with the checkpoint's weights and, when it carries them, the
 * optimizer's step count and moments. `spec` and `outputKind` must be the ones the
 * checkpointed model was built with (they choose the optimizer and loss).
 */
export async function restoreCheckpoint(tfjs: Tf, checkpoint: Checkpoint, spec: ModelSpecInput, outputKind: OutputKind): Promise<tf.LayersModel> {
  const model = await modelFromArtifact(tfjs, checkpoint.artifact);
  compileModel(tfjs, model, spec, outputKind);
  if (checkpoint.optimizer) await restoreOptimizer(tfjs, model, checkpoint.optimizer);
  return model;
}

async function optimizerState(tfjs: Tf, optimizer: tf.Optimizer): Promise<SerializedWeights | undefined> {
  let named: Awaited<ReturnType<tf.Optimizer['getWeights']>>;
  try {
    named = await optimizer.getWeights();
  } catch {
    return undefined; // e.g. plain SGD in tfjs 4 has no getWeights
  }
  try {
    const { data, specs } = await tfjs.io.encodeWeights(named);
    return { specs, data: new Uint8Array(data) };
  } finally {
    // getWeights returns the optimizer's live variables plus a fresh `iter` scalar:
    // dispose only that one.
    for (const { name, tensor } of named) if (name === 'iter') tensor.dispose();
  }
}

async function restoreOptimizer(tfjs: Tf, model: tf.LayersModel, saved: SerializedWeights): Promise<void> {
  const bytes = saved.data.buffer.slice(saved.data.byteOffset, saved.data.byteOffset + saved.data.byteLength) as ArrayBuffer;
  const decoded = tfjs.io.decodeWeights(bytes, saved.specs);
  // Adam pairs its moments with the model's weights by position, not name (names carry
  // per-process suffixes), so check position by position that the shapes agree.
  const named = Object.entries(decoded).map(([name, tensor]) => ({ name, tensor }));
  try {
    if (named.length !== saved.specs.length) throw new FtiError(FailureType.IntegrityError, 'checkpoint optimizer state has duplicate or missing tensors');
    const [iter, ...moments] = named;
    const trainable = model.trainableWeights.map((w) => w.shape);
    const fits =
      iter?.name === 'iter' &&
      (moments.length === 0 || (moments.length === 2 * trainable.length && moments.every((m, i) => sameShape(m.tensor.shape, trainable[i % trainable.length] ?? []))));
    if (!fits) throw invalid('checkpoint optimizer state does not match this model (was it built with another spec?)');
    await model.optimizer.setWeights(named);
  } finally {
    // setWeights made variables of its own from these.
    tfjs.dispose(named.map((n) => n.tensor));
  }
}

function sameShape(a: readonly number[], b: readonly (number | null)[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
