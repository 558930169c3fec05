/**
 * The model family FTI trains: a multi-layer perceptron over the encoded feature
 * columns, with a sigmoid output and binary cross-entropy for classifiers and a
 * linear output and mean squared error for regressors, trained with Adam.
 * The schemas here validate the `params` of a training workflow's input.
 */
import type * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import type { Tf } from './backend.ts';
import { invalid, parseOrThrow } from '../core/errors.ts';
import type { ModelSignature } from './signature.ts';
import { GbdtParamsSchema } from './gbdt/boost.ts';

export type OutputKind = ModelSignature['output']['kind'];

export const ModelSpecSchema = z.strictObject({
  hiddenUnits: z
    .array(z.number().int().min(1).max(4096))
    .max(8)
    .default(() => [64, 32]),
  activation: z.enum(['relu', 'elu', 'tanh']).default('relu'),
  /** Dropout rate after each hidden layer; 0 adds no dropout layers. */
  dropout: z.number().min(0).max(0.9).default(0),
  /** L2 penalty on hidden kernels; included in the reported training loss, not in valLoss. */
  l2: z.number().min(0).max(1).default(0),
  learningRate: z.number().positive().max(1).default(0.001),
  /** Seeds the weight initializers, for reproducible runs. */
  seed: z.number().int().min(0).optional(),
});
export type ModelSpec = z.output<typeof ModelSpecSchema>;
export type ModelSpecInput = z.input<typeof ModelSpecSchema>;

/** Model spec plus the training loop's own knobs. */
export const MlpParamsSchema = ModelSpecSchema.extend({
  family: z.literal('mlp'),
  epochs: z.number().int().min(1).max(1000).default(10),
  batchSize: z.number().int().min(1).max(65_536).default(512),
});
export type MlpParams = z.output<typeof MlpParamsSchema>;

/**
 * The `params` of a training run, and what a model version records: `family` picks the
 * model (`mlp`, the default, or `gbdt`: gradient-boosted trees, gbdt/boost.ts) and the
 * other fields are that family's knobs.
 */
export const TrainParamsSchema = z.preprocess(
  (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) && !('family' in v) ? { ...v, family: 'mlp' } : v),
  z.discriminatedUnion('family', [MlpParamsSchema, GbdtParamsSchema]),
);
export type TrainParams = z.output<typeof TrainParamsSchema>;
export type TrainParamsInput = z.input<typeof TrainParamsSchema>;

/** A compiled, freshly initialised model taking `inputWidth` encoded columns (encoder.width). */
export function buildModel(tfjs: Tf, specInput: ModelSpecInput, inputWidth: number, outputKind: OutputKind): tf.LayersModel {
  const spec = parseOrThrow(ModelSpecSchema, specInput, 'model spec');
  if (!Number.isInteger(inputWidth) || inputWidth < 1) throw invalid(`inputWidth must be a positive integer, got ${inputWidth}`);
  // Seeded initializers make two builds with the same seed identical. Dropout is left
  // unseeded on purpose: tfjs reuses a seeded dropout mask on every batch.
  const init = (i: number) => (spec.seed === undefined ? 'glorotUniform' : tfjs.initializers.glorotUniform({ seed: spec.seed + i }));
  const regularizer = spec.l2 > 0 ? tfjs.regularizers.l2({ l2: spec.l2 }) : undefined;

  const model = tfjs.sequential();
  spec.hiddenUnits.forEach((units, i) => {
    model.add(
      tfjs.layers.dense({
        units,
        activation: spec.activation,
        kernelInitializer: init(i),
        kernelRegularizer: regularizer,
        ...(i === 0 ? { inputShape: [inputWidth] } : {}),
      }),
    );
    if (spec.dropout > 0) model.add(tfjs.layers.dropout({ rate: spec.dropout }));
  });
  model.add(
    tfjs.layers.dense({
      units: 1,
      activation: outputKind === 'binary_classifier' ? 'sigmoid' : 'linear',
      kernelInitializer: init(spec.hiddenUnits.length),
      ...(spec.hiddenUnits.length === 0 ? { inputShape: [inputWidth] } : {}),
    }),
  );
  compileModel(tfjs, model, spec, outputKind);
  return model;
}

/** (Re)compiles with a fresh Adam optimizer: for new models and for models loaded from an artifact. */
export function compileModel(tfjs: Tf, model: tf.LayersModel, specInput: ModelSpecInput, outputKind: OutputKind): void {
  const spec = parseOrThrow(ModelSpecSchema, specInput, 'model spec');
  model.compile({
    optimizer: tfjs.train.adam(spec.learningRate),
    loss: outputKind === 'binary_classifier' ? 'binaryCrossentropy' : 'meanSquaredError',
  });
}

/** The number of input columns a model expects. */
/** One Dense layer of a plain stack (denseStack): its weights, as the model holds them, and its activation's name. */
export interface DenseStackLayer {
  /** inputs × units. */
  kernel: tf.Tensor2D;
  /** Absent for a layer without one. */
  bias: tf.Tensor1D | undefined;
  activation: DenseActivation;
}

/** The activations buildModel gives its layers, which the forward passes outside the layers API (dense-forward.ts, fused-forward.ts) take. */
export type DenseActivation = 'linear' | 'relu' | 'elu' | 'tanh' | 'sigmoid';
const DENSE_ACTIVATIONS = new Set<string>(['linear', 'relu', 'elu', 'tanh', 'sigmoid']);

/**
 * The model as the models buildModel makes: Dense layers one after another (Dropout
 * passes through at inference), each with an activation listed above, ending in one
 * output. Undefined for any other topology, whose callers keep the layers model's predict.
 */
export function denseStack(model: tf.LayersModel): DenseStackLayer[] | undefined {
  const layers: DenseStackLayer[] = [];
  for (const layer of model.layers) {
    const kind = layer.getClassName();
    if (kind === 'Dropout') continue;
    if (kind !== 'Dense') return undefined;
    const config = layer.getConfig();
    const activation = String(config.activation);
    const weights = layer.getWeights();
    const [kernel, bias] = weights;
    if (!DENSE_ACTIVATIONS.has(activation) || !kernel || kernel.rank !== 2 || (config.useBias !== false && !bias) || weights.length > 2) return undefined;
    if (layers.length > 0 && layers.at(-1)?.kernel.shape[1] !== kernel.shape[0]) return undefined;
    layers.push({ kernel: kernel as tf.Tensor2D, bias: bias as tf.Tensor1D | undefined, activation: activation as DenseActivation });
  }
  return layers.at(-1)?.kernel.shape[1] === 1 ? layers : undefined;
}

export function modelInputWidth(model: tf.LayersModel): number {
  const shape = model.inputs[0]?.shape;
  const width = shape?.[1];
  if (model.inputs.length !== 1 || shape?.length !== 2 || typeof width !== 'number') {
    throw invalid(`expected a model with one input of shape [batch, width], got ${JSON.stringify(model.inputs.map((i) => i.shape))}`);
  }
  return width;
}

/**
 * Frees a model's weights and its optimizer's state. tfjs leaves an optimizer passed
 * to compile() to its owner, and a long-lived worker trains many models.
 */
export function disposeModel(model: tf.LayersModel): void {
  const optimizer = model.optimizer as tf.Optimizer | undefined;
  model.dispose();
  optimizer?.dispose();
}
