/**
 * The forward pass of a small multi-layer perceptron in plain JavaScript, for the few
 * rows of an online request. A TensorFlow.js predict call costs 100–200 µs on the
 * WASM backend for a handful of rows (tensor creation, one kernel dispatch per layer,
 * the read back), where the arithmetic of a 64-32 network on one row is a few thousand
 * multiply-adds: about 15 µs here (measured with `ml/predictor.ts`'s threshold in mind).
 * Bigger batches (batch inference, evaluation) still go through TensorFlow.js, which
 * is faster per row.
 *
 * Only the models buildModel makes are taken: Dense layers (Dropout passes through at
 * inference) with the activations it uses. Any other topology gets `undefined`, and its
 * caller keeps TensorFlow.js. Sums run in float64 and each layer's outputs are rounded
 * to float32, so a score agrees with TensorFlow.js's to about 1e-6 (its kernels sum in
 * float32, in another order).
 */
import type * as tf from '@tensorflow/tfjs';
import { denseStack, type DenseActivation } from './model.ts';

type Activation = (v: number) => number;

const ACTIVATIONS: Record<DenseActivation, Activation> = {
  linear: (v) => v,
  relu: (v) => (v > 0 ? v : 0),
  elu: (v) => (v > 0 ? v : Math.expm1(v)),
  tanh: (v) => Math.tanh(v),
  sigmoid: (v) => 1 / (1 + Math.exp(-v)),
};

interface DenseLayer {
  inputs: number;
  units: number;
  /** inputs × units, row-major (TensorFlow.js's kernel layout). */
  kernel: Float32Array;
  bias: Float32Array;
  activation: Activation;
}

/** `size` rows of `width` values in, one output per row out. */
export type DenseForward = (x: Float32Array, size: number) => Float32Array;

/** The model's forward pass in JavaScript, or undefined when it is not a plain stack of Dense layers (denseStack). */
export function denseForward(model: tf.LayersModel): DenseForward | undefined {
  const stack = denseStack(model);
  if (!stack) return undefined;
  const layers: DenseLayer[] = stack.map(({ kernel, bias, activation }) => {
    const [inputs, units] = kernel.shape;
    return { inputs, units, kernel: Float32Array.from(kernel.dataSync()), bias: bias ? Float32Array.from(bias.dataSync()) : new Float32Array(units), activation: ACTIVATIONS[activation] };
  });
  const sums = new Float64Array(Math.max(...layers.map((l) => l.units)));
  // The hidden layers' outputs, kept from call to call (grown when a call has more rows):
  // only the last layer's is handed out. The pass is synchronous, so no two calls share them.
  const hidden = layers.slice(0, -1).map(() => new Float32Array(0));
  return (x, size) => {
    let input = x;
    for (let l = 0; l < layers.length; l++) {
      const { inputs, units, kernel, bias, activation } = layers[l] as DenseLayer;
      let output = l < hidden.length ? (hidden[l] as Float32Array) : new Float32Array(size * units);
      if (output.length < size * units) output = hidden[l] = new Float32Array(size * units);
      for (let r = 0; r < size; r++) {
        for (let u = 0; u < units; u++) sums[u] = bias[u] as number;
        // Input by input along the kernel's rows: contiguous reads, and a zero input (a one-hot's) costs nothing.
        for (let i = 0; i < inputs; i++) {
          const v = input[r * inputs + i] as number;
          if (v === 0) continue;
          const row = i * units;
          for (let u = 0; u < units; u++) sums[u] = (sums[u] as number) + v * (kernel[row + u] as number);
        }
        for (let u = 0; u < units; u++) output[r * units + u] = activation(Math.fround(sums[u] as number));
      }
      input = output;
    }
    return input;
  };
}
