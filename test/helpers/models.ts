/**
 * Registers a model version the way the training pipeline does, without running it:
 * a training dataset of the feature view (point-in-time join), a signature fitted on
 * its train split's statistics, a small seeded MLP trained briefly (or not at all),
 * and lineage naming the view and the commits the dataset read.
 */
import type { Knex } from 'knex';
import type { FeatureViewDefinition } from '../../features/views.ts';
import { artifactFromModel } from '../../ml/artifact.ts';
import type { Tf } from '../../ml/backend.ts';
import { toBatches } from '../../ml/batches.ts';
import { featureSpecs } from '../../activities/training-run.ts';
import { createEncoder, fitSignature } from '../../ml/encoding.ts';
import { buildModel, disposeModel } from '../../ml/model.ts';
import { trainModel } from '../../ml/train.ts';
import { ModelRegistry, type ModelVersion } from '../../registry/models/index.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';

export interface RegisterOptions {
  model: string;
  view: FeatureViewDefinition;
  /** Spine window of the training dataset. */
  start: string;
  end: string;
  seed: number;
  hiddenUnits?: number[];
  /** 0: initial weights only. */
  epochs?: number;
}

export async function registerModelVersion(knex: Knex, tf: Tf, options: RegisterOptions): Promise<ModelVersion & { trainingDatasetId: number }> {
  const { view } = options;
  const record = await new FeatureStore({ knex: knex }).registerView(view);
  const dataset = await new TrainingStore({ knex: knex }).createDataset(record, {
    idempotencyKey: `${options.model}/${view.name}@${view.version}/${options.start}/${options.end}`,
    start: new Date(options.start),
    end: new Date(options.end),
  });
  const signature = fitSignature(featureSpecs(view), dataset.statistics, { name: view.label.name, kind: view.outputKind });
  const encoder = createEncoder(signature);
  const model = buildModel(tf, { hiddenUnits: options.hiddenUnits ?? [8], seed: options.seed }, encoder.width, view.outputKind);
  try {
    const columns = [...view.features.map((f) => f.name), view.label.name];
    const epochs = options.epochs ?? 1;
    if (epochs > 0) {
      await trainModel({ tf, model, epochs, trainBatches: () => toBatches(new TrainingStore({ knex: knex }).streamSplit(dataset, 'train', columns), encoder, { label: view.label.name, batchSize: 512 }) });
    }
    const { version } = await new ModelRegistry({ knex }).registerModelVersion({
      name: options.model,
      artifact: await artifactFromModel(tf, model),
      signature,
      params: { hiddenUnits: options.hiddenUnits ?? [8], seed: options.seed, epochs },
      lineage: {
        featureView: { name: view.name, version: view.version },
        trainingDatasetId: dataset.id,
        featureGroupCommits: dataset.commits,
        tfjsBackend: tf.getBackend(),
        trainedAt: new Date().toISOString(),
      },
    });
    return { ...version, trainingDatasetId: dataset.id };
  } finally {
    disposeModel(model);
  }
}
