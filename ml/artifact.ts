/**
 * A TensorFlow.js layers model as plain data: topology + weight specs + weight bytes,
 * with a sha256 that covers all three. The model registry stores this; training
 * checkpoints use it too. Conversion goes through tf.io handlers, so any backend works.
 */
import crypto from 'node:crypto';
import type * as tf from '@tensorflow/tfjs';
import { invalid } from '../core/errors.ts';
import { isEnsembleArtifact } from './gbdt/ensemble.ts';

export interface ModelArtifact {
  /** The layers-model topology JSON (`model.toJSON()` shape). */
  modelTopology: Record<string, unknown>;
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightData: Uint8Array;
  /** Optimizer / loss configuration, when saved with the model. */
  trainingConfig?: Record<string, unknown>;
}

/** sha256 over topology, weight specs and weight bytes (hex). */
export function artifactSha256(artifact: ModelArtifact): string {
  const hash = crypto.createHash('sha256');
  hash.update(JSON.stringify(artifact.modelTopology));
  hash.update('\0');
  hash.update(JSON.stringify(artifact.weightSpecs));
  hash.update('\0');
  hash.update(artifact.weightData);
  return hash.digest('hex');
}

export function artifactSize(artifact: ModelArtifact): number {
  return Buffer.byteLength(JSON.stringify(artifact.modelTopology)) + Buffer.byteLength(JSON.stringify(artifact.weightSpecs)) + artifact.weightData.byteLength;
}

/** Captures a model's topology and weights without touching the file system. */
export async function artifactFromModel(tfjs: typeof tf, model: tf.LayersModel): Promise<ModelArtifact> {
  let captured: ModelArtifact | undefined;
  await model.save(
    tfjs.io.withSaveHandler(async (artifacts) => {
      if (!artifacts.modelTopology || artifacts.modelTopology instanceof ArrayBuffer || !artifacts.weightSpecs || !artifacts.weightData) {
        throw new Error('expected a layers model with JSON topology and weights');
      }
      captured = {
        modelTopology: artifacts.modelTopology as Record<string, unknown>,
        weightSpecs: artifacts.weightSpecs,
        weightData: toBytes(artifacts.weightData),
        trainingConfig: artifacts.trainingConfig as Record<string, unknown> | undefined,
      };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!captured) throw new Error('model.save produced no artifact');
  return captured;
}

/** A tf.io.IOHandler that loads the given artifact: `tf.loadLayersModel(artifactHandler(a))`. */
export function artifactHandler(load: () => Promise<ModelArtifact>): tf.io.IOHandler {
  return {
    load: async () => {
      const artifact = await load();
      // A gradient-boosted tree version is not a layers model (ml/predictor.ts loads either).
      if (isEnsembleArtifact(artifact)) throw invalid('this version is a gradient-boosted tree model, not a TensorFlow.js layers model: load it with loadPredictor (ml/predictor.ts)');
      // tfjs expects an ArrayBuffer of exactly the weight bytes.
      const weightData = artifact.weightData.buffer.slice(artifact.weightData.byteOffset, artifact.weightData.byteOffset + artifact.weightData.byteLength) as ArrayBuffer;
      return {
        modelTopology: artifact.modelTopology,
        weightSpecs: artifact.weightSpecs,
        weightData,
        trainingConfig: artifact.trainingConfig as tf.io.TrainingConfig | undefined,
        format: 'layers-model',
      };
    },
  };
}

export async function modelFromArtifact(tfjs: typeof tf, artifact: ModelArtifact): Promise<tf.LayersModel> {
  return tfjs.loadLayersModel(artifactHandler(async () => artifact));
}

function toBytes(data: ArrayBuffer | ArrayBuffer[]): Uint8Array {
  if (!Array.isArray(data)) return new Uint8Array(data.slice(0));
  const total = data.reduce((n, b) => n + b.byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const b of data) {
    out.set(new Uint8Array(b), offset);
    offset += b.byteLength;
  }
  return out;
}
