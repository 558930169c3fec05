/**
 * The forward pass of a plain stack of Dense layers as the TensorFlow.js ops a layers
 * model's predict runs, without the layers API around them. Each Dense layer is one
 * fused product with its bias and, for relu, linear and elu, its activation; any other
 * activation is applied after it: what tfjs-layers' Dense does, so the outputs are the
 * same, bit for bit. What is left out is predict's per-call work (its batching loop,
 * name scopes, call hooks and input checks): batch scoring of the flights' 64-32 model,
 * 62 batches of 8,192 rows on the WASM backend, took 220 ms this way against 270 ms.
 *
 * Only the models buildModel makes are taken (model.ts, denseStack); any other
 * topology gets `undefined`, and its caller keeps the layers model's predict.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Tf } from './backend.ts';
import { denseStack, type DenseActivation } from './model.ts';
import { takeValues } from './predict.ts';

/** `size` rows of `width` values in, one output per row out. */
export type FusedForward = (x: Float32Array, size: number) => Promise<Float32Array>;

/** Activations tfjs-layers fuses into the product (its mapActivationToFusedKernel). */
const FUSED = new Set<DenseActivation>(['relu', 'linear', 'elu']);
/** Activations it applies after the product and the bias, as these ops. */
const AFTER: Record<Exclude<DenseActivation, 'relu' | 'linear' | 'elu'>, (tfjs: Tf, x: tf.Tensor) => tf.Tensor> = {
  sigmoid: (tfjs, x) => tfjs.sigmoid(x),
  tanh: (tfjs, x) => tfjs.tanh(x),
};

/** The model's forward pass as fused products, or undefined when it is not a plain stack of Dense layers (denseStack). Its tensors are the model's: use it while the model lives. */
export function fusedForward(tfjs: Tf, model: tf.LayersModel): FusedForward | undefined {
  const ops = denseStack(model);
  const width = ops?.[0]?.kernel.shape[0];
  if (!ops || width === undefined) return undefined;
  return async (x, size) => {
    const out = tfjs.tidy(() => {
      let h: tf.Tensor2D = tfjs.tensor2d(x, [size, width]);
      for (const { kernel, bias, activation } of ops) {
        if (FUSED.has(activation)) h = tfjs.fused.matMul({ a: h, b: kernel, bias, activation: activation as tf.fused.Activation }) as tf.Tensor2D;
        else {
          // The product, then the bias, then the activation: three ops, as tfjs-layers runs them.
          const product = tfjs.fused.matMul({ a: h, b: kernel });
          h = AFTER[activation as keyof typeof AFTER](tfjs, bias ? tfjs.add(product, bias) : product) as tf.Tensor2D;
        }
      }
      return h.reshape([size]);
    });
    return takeValues(out);
  };
}
