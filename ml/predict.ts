/**
 * Scoring: the single path from rows (or encoded batches) to model outputs, used by
 * batch inference, the online server and test-split evaluation. Tensors live only
 * inside one call; outputs come back as plain Float32Arrays.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Batch } from './batches.ts';
import type { Encoder } from './encoding.ts';
import { invalid } from '../core/errors.ts';
import type { Tf } from './backend.ts';
import { modelInputWidth } from './model.ts';
import type { FeatureRow } from './values.ts';

/** Rows per forward pass in predictRows: large enough to amortise dispatch, small enough to bound memory. */
export const PREDICT_CHUNK = 8192;

/** One output per row of `x` (size × width encoded values): probabilities for classifiers. */
export async function predictBatch(tfjs: Tf, model: tf.LayersModel, x: Float32Array, size: number): Promise<Float32Array> {
  const width = modelInputWidth(model);
  if (!Number.isInteger(size) || size < 0 || x.length !== size * width) throw invalid(`predictBatch: expected ${size}×${width} values, got ${x.length}`);
  if (size === 0) return new Float32Array(0);
  const out = tfjs.tidy(() => {
    const y = model.predict(tfjs.tensor2d(x, [size, width]), { batchSize: size });
    if (Array.isArray(y)) throw invalid('expected a model with one output');
    return y.reshape([size]);
  });
  return takeValues(out);
}

/** A forward pass's output tensor as a Float32Array; the tensor is disposed. */
export async function takeValues(out: tf.Tensor): Promise<Float32Array> {
  try {
    // data(), not dataSync(): on WebGPU it waits without blocking the event loop.
    const values = await out.data();
    return values instanceof Float32Array ? values : Float32Array.from(values);
  } finally {
    out.dispose();
  }
}

/**
 * Encodes and scores rows in chunks. Rows must be valid (encoder.validateRow at the
 * trust boundary); an invalid row throws. The encoder must be the model version's.
 */
export async function predictRows(tfjs: Tf, model: tf.LayersModel, encoder: Encoder, rows: readonly FeatureRow[], chunk = PREDICT_CHUNK): Promise<Float32Array> {
  const width = modelInputWidth(model);
  if (encoder.width !== width) throw invalid(`the encoder writes ${encoder.width} columns but the model takes ${width}: signature and model are from different versions`);
  const scores = new Float32Array(rows.length);
  for (let start = 0; start < rows.length; start += chunk) {
    const part = rows.slice(start, start + chunk);
    scores.set(await predictBatch(tfjs, model, encoder.encodeRows(part), part.length), start);
  }
  return scores;
}

/** Labels and scores over a stream of batches (a test split), for evaluateClassifier / evaluateRegressor. */
export async function collectPredictions(tfjs: Tf, model: tf.LayersModel, batches: AsyncIterable<Batch>): Promise<{ labels: Float32Array; scores: Float32Array }> {
  return collectScores((x, size) => predictBatch(tfjs, model, x, size), batches);
}

/** The same for any model: `predict` scores one batch (a Predictor's predict). */
export async function collectScores(predict: (x: Float32Array, size: number) => Promise<Float32Array>, batches: AsyncIterable<Batch>): Promise<{ labels: Float32Array; scores: Float32Array }> {
  let labels: Float32Array = new Float32Array(1024);
  let scores: Float32Array = new Float32Array(1024);
  let n = 0;
  for await (const batch of batches) {
    if (batch.y.length !== batch.size) throw invalid(`collectScores: a batch of ${batch.size} rows has ${batch.y.length} labels`);
    const predicted = await predict(batch.x, batch.size);
    if (n + batch.size > labels.length) {
      const capacity = Math.max(labels.length * 2, n + batch.size);
      labels = grow(labels, capacity);
      scores = grow(scores, capacity);
    }
    labels.set(batch.y, n);
    scores.set(predicted, n);
    n += batch.size;
  }
  return { labels: labels.slice(0, n), scores: scores.slice(0, n) };
}

function grow(a: Float32Array, capacity: number): Float32Array {
  const b = new Float32Array(capacity);
  b.set(a);
  return b;
}
