import { executeChild, log, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import type { BatchInferenceResult } from '../activities/inference.ts';
import type { FeaturePipelineResult } from '../activities/feature.ts';
import { FtiPipelineInputSchema, type FtiPipelineInput } from '../core/inputs.ts';
import { batchInference } from './batch-inference.ts';
import { featurePipeline } from './feature-pipeline.ts';
import { progressQuery, type PipelineProgress } from '../core/progress.ts';
import { trainingPipeline, type TrainingPipelineResult } from './training-pipeline.ts';
import { parseInput } from './validate.ts';

export interface FtiPipelineResult {
  /** One commit per feature group, in the order computed. */
  commits: FeaturePipelineResult[];
  training: TrainingPipelineResult;
  predictions: BatchInferenceResult;
  /** The chain of versions, from the prediction run back to the commits its model was trained on. */
  lineage: {
    predictionRun: string;
    modelVersion: { model: string; version: number };
    trainingDataset: number;
    commits: TrainingPipelineResult['commits'];
  };
  /** Wall time of each stage, in seconds. */
  seconds: { features: number; training: number; inference: number; total: number };
}

export type { FtiPipelineInput };

/**
 * feature -> training -> batch inference, as child workflows that hand over only
 * version references. Child workflow ids extend this run's id, so starting the same
 * chain twice (same id) never computes anything twice.
 */
export async function ftiPipeline(input: FtiPipelineInput): Promise<FtiPipelineResult> {
  const args = parseInput('ftiPipeline', FtiPipelineInputSchema, input);
  const { workflowId } = workflowInfo();
  const total = args.features.groups.length + 2;
  const progress: PipelineProgress = { stage: 'features', done: 0, total };
  setHandler(progressQuery, () => progress);
  const t0 = Date.now();

  const commits: FeaturePipelineResult[] = [];
  for (const featureGroup of args.features.groups) {
    const childId = `${workflowId}/features:${featureGroup}`;
    progress.details = { child: childId };
    commits.push(await executeChild(featurePipeline, { workflowId: childId, args: [{ featureGroup, start: args.features.start, end: args.features.end }] }));
    progress.done++;
  }
  const t1 = Date.now();

  Object.assign(progress, { stage: 'training', details: { child: `${workflowId}/train:${args.training.model}` } });
  const training = await executeChild(trainingPipeline, { workflowId: `${workflowId}/train:${args.training.model}`, args: [args.training] });
  progress.done++;
  const t2 = Date.now();

  // Score with the version just trained (pinned), unless an alias was asked for.
  const scoring = args.inference.alias ? { alias: args.inference.alias } : { version: training.version };
  Object.assign(progress, { stage: 'inference', details: { child: `${workflowId}/infer:${training.model}` } });
  // The prediction run is named after the version it scores: a later run of the same
  // chain that trains another version writes a run of its own instead of colliding
  // with the earlier one (patched: recorded histories of earlier runs still replay).
  const perVersion = `${workflowId}/infer:${training.model}@${training.version}`;
  const runId = patched('prediction-run-per-version') && !args.inference.alias && perVersion.length <= 200 ? { runId: perVersion } : {};
  const predictions = await executeChild(batchInference, {
    workflowId: `${workflowId}/infer:${training.model}`,
    args: [{ model: training.model, ...scoring, start: args.inference.start, end: args.inference.end, ...runId }],
  });
  progress.done++;
  const t3 = Date.now();

  const result: FtiPipelineResult = {
    commits,
    training,
    predictions,
    lineage: {
      predictionRun: predictions.runId,
      modelVersion: { model: predictions.model, version: predictions.version },
      trainingDataset: training.trainingDatasetId,
      commits: training.commits,
    },
    seconds: { features: (t1 - t0) / 1000, training: (t2 - t1) / 1000, inference: (t3 - t2) / 1000, total: (t3 - t0) / 1000 },
  };
  Object.assign(progress, { stage: 'done', details: { ...result.lineage } });
  log.info('FTI chain complete', result.lineage);
  return result;
}
