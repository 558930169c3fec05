import { condition, executeChild, log, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import type { BatchInferenceResult } from '../activities/inference.ts';
import type { FeaturePipelineResult } from '../activities/feature.ts';
import { FtiPipelineInputSchema, type FtiPipelineInput } from '../core/inputs.ts';
import { batchInference } from './batch-inference.ts';
import { featurePipeline } from './feature-pipeline.ts';
import { progressQuery, type PipelineProgress } from '../core/progress.ts';
import { trainingPipeline, type TrainingPipelineResult } from './training-pipeline.ts';
import { modelRegisteredSignal } from './model-registered.ts';
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
  /** Wall time of each stage, in seconds (inference starts once the version is registered, so it overlaps the end of training). */
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

  // Scoring the version just trained starts as soon as it is registered: the training
  // child announces it (modelRegistered) before it writes the version's report, and batch
  // inference runs beside that report. Scoring by alias waits for the whole training run
  // (a promotion may move the alias). patched: earlier histories waited, and replay so.
  const trainingId = `${workflowId}/train:${args.training.model}`;
  Object.assign(progress, { stage: 'training', details: { child: trainingId } });
  const onRegistration = !args.inference.alias && patched('score-on-registration');
  let announced: number | undefined;
  if (onRegistration) {
    setHandler(modelRegisteredSignal, ({ model, version }) => {
      if (model === args.training.model) announced ??= version;
    });
  }
  let t2 = t1;
  const trainingRun = executeChild(trainingPipeline, { workflowId: trainingId, args: [onRegistration ? { ...args.training, announceVersion: true } : args.training] }).then((result) => {
    progress.done++;
    t2 = Date.now();
    return result;
  });
  let trainingEnded = false;
  const ended = () => {
    trainingEnded = true;
  };
  trainingRun.then(ended, ended);
  if (onRegistration) await condition(() => announced !== undefined || trainingEnded);
  // The version to score: announced, or from the finished run (which rethrows a failure before registration).
  const version = announced ?? (await trainingRun).version;
  const t3 = Date.now();

  // Score with the version just trained (pinned), unless an alias was asked for.
  const scoring = args.inference.alias ? { alias: args.inference.alias } : { version };
  Object.assign(progress, { stage: 'inference', details: { child: `${workflowId}/infer:${args.training.model}` } });
  // The prediction run is named after the version it scores: a later run of the same
  // chain that trains another version writes a run of its own instead of colliding
  // with the earlier one (patched: recorded histories of earlier runs still replay).
  const perVersion = `${workflowId}/infer:${args.training.model}@${version}`;
  const runId = patched('prediction-run-per-version') && !args.inference.alias && perVersion.length <= 200 ? { runId: perVersion } : {};
  const inferenceRun = executeChild(batchInference, {
    workflowId: `${workflowId}/infer:${args.training.model}`,
    args: [{ model: args.training.model, ...scoring, start: args.inference.start, end: args.inference.end, ...runId }],
  });
  // Both settle before the chain ends: a training run that fails after its version was
  // registered (its report) fails the chain, once the scoring of that version is done.
  const [trainingOutcome, inferenceOutcome] = await Promise.allSettled([trainingRun, inferenceRun]);
  if (trainingOutcome.status === 'rejected') throw trainingOutcome.reason;
  if (inferenceOutcome.status === 'rejected') throw inferenceOutcome.reason;
  const [training, predictions] = [trainingOutcome.value, inferenceOutcome.value];
  progress.done++;
  const t4 = Date.now();

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
    seconds: { features: (t1 - t0) / 1000, training: (t2 - t1) / 1000, inference: (t4 - t3) / 1000, total: (t4 - t0) / 1000 },
  };
  Object.assign(progress, { stage: 'done', details: { ...result.lineage } });
  log.info('FTI chain complete', result.lineage);
  return result;
}
