/**
 * A loaded model of either family behind one interface: encoded rows in, one output
 * per row out (probabilities for classifiers). Scoring, evaluation and promotion call
 * this and never ask which family a version is; the artifact says (a TensorFlow.js
 * layers model, or a gradient-boosted tree ensemble, gbdt/ensemble.ts).
 */
import type * as tf from '@tensorflow/tfjs';
import { invalid } from '../core/errors.ts';
import { modelFromArtifact, type ModelArtifact } from './artifact.ts';
import type { Tf } from './backend.ts';
import type { ModelFamily } from './encoding.ts';
import { ensembleFromArtifact, isEnsembleArtifact, predictEnsemble } from './gbdt/ensemble.ts';
import { disposeModel, modelInputWidth } from './model.ts';
import { predictBatch } from './predict.ts';
import { denseForward } from './dense-forward.ts';
import { fusedForward } from './fused-forward.ts';

/**
 * Rows up to which an MLP scores in plain JavaScript (dense-forward.ts): on the WASM
 * backend a TensorFlow.js call costs 100–200 µs for up to 16 rows, and the JavaScript
 * pass of the 64-32 flights model about 15 µs a row, so they meet near 10 rows.
 */
const JS_FORWARD_ROWS = 8;

export interface Predictor {
  readonly family: ModelFamily;
  /** Encoded columns per row (the signature's encoder.width). */
  readonly width: number;
  /** `size` rows of `width` values, row-major. */
  predict(x: Float32Array, size: number): Promise<Float32Array>;
  dispose(): void;
}

export async function loadPredictor(tfjs: Tf, artifact: ModelArtifact): Promise<Predictor> {
  if (isEnsembleArtifact(artifact)) {
    const ensemble = ensembleFromArtifact(artifact);
    return {
      family: 'gbdt',
      width: ensemble.width,
      predict: async (x, size) => {
        if (!Number.isInteger(size) || size < 0 || x.length !== size * ensemble.width) throw invalid(`predict: expected ${size}×${ensemble.width} values, got ${x.length}`);
        return predictEnsemble(ensemble, x, size);
      },
      dispose: () => undefined,
    };
  }
  const model: tf.LayersModel = await modelFromArtifact(tfjs, artifact);
  try {
    const width = modelInputWidth(model);
    // A few rows (an online request's) go through the plain-JavaScript forward pass; more
    // through TensorFlow.js, as fused products where the model is a plain Dense stack.
    const forward = denseForward(model);
    const fused = fusedForward(tfjs, model);
    const predict = async (x: Float32Array, size: number): Promise<Float32Array> => {
      const pass = forward && size <= JS_FORWARD_ROWS ? forward : fused;
      if (!pass) return predictBatch(tfjs, model, x, size);
      if (!Number.isInteger(size) || size < 0 || x.length !== size * width) throw invalid(`predict: expected ${size}×${width} values, got ${x.length}`);
      return size === 0 ? new Float32Array(0) : pass(x, size);
    };
    return { family: 'mlp', width, predict, dispose: () => disposeModel(model) };
  } catch (err) {
    disposeModel(model);
    throw err;
  }
}
