import { CancellationScope, condition, executeChild, log, patched, setHandler, startChild, workflowInfo } from '@temporalio/workflow';
import type { BatchInferenceResult } from '../activities/inference.ts';
import type { FeaturePipelineResult } from '../activities/feature.ts';
import type { z } from 'zod';
import { FtiPipelineInputSchema, type FtiPipelineInput, type TrainingPipelineInput } from '../core/inputs.ts';
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
type ParsedChainInput = z.output<typeof FtiPipelineInputSchema>;

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

  const trainingId = `${workflowId}/train:${args.training.model}`;
  // Every feature run and the training run start at once: each after the first waits
  // for the one before it to signal its commit (workflows/upstream.ts), so a stage
  // starts as soon as the stage before commits, with no child to create then. (patched:
  // earlier histories started each child after the one before had finished, and only
  // then asked for score-on-registration: the same order replays them.)
  const upFront = patched('children-up-front');
  const early = upFront ? listenForRegistration(args) : undefined;
  const { commits, trainingRun: started } = early
    ? await featuresUpFront(args, { workflowId, trainingId, training: trainingInput(args, early), progress })
    : await featuresInTurn(args, workflowId, progress);
  const registration = early ?? listenForRegistration(args);
  const t1 = Date.now();

  // Scoring the version just trained starts as soon as it is registered: the training
  // child announces it (modelRegistered) before it writes the version's report, and batch
  // inference runs beside that report. Scoring by alias waits for the whole training run
  // (a promotion may move the alias). patched: earlier histories waited, and replay so.
  Object.assign(progress, { stage: 'training', details: { child: trainingId } });
  let t2 = t1;
  const trainingRun = (started ?? executeChild(trainingPipeline, { workflowId: trainingId, args: [trainingInput(args, registration)] })).then((result) => {
    progress.done++;
    t2 = Date.now();
    return result;
  });
  let trainingEnded = false;
  const ended = () => {
    trainingEnded = true;
  };
  trainingRun.then(ended, ended);
  if (registration.on) await condition(() => registration.announced !== undefined || trainingEnded);
  // The version to score: announced, or from the finished run (which rethrows a failure before registration).
  const version = registration.announced ?? (await trainingRun).version;
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

/** Whether the chain scores the version as soon as it is registered, and the version once the training run announces it. */
interface Registration {
  on: boolean;
  announced?: number;
}

/** Asks for score-on-registration (patched) unless an alias is scored, and listens for the training run's announcement. */
function listenForRegistration(args: ParsedChainInput): Registration {
  const registration: Registration = { on: !args.inference.alias && patched('score-on-registration') };
  if (registration.on) {
    setHandler(modelRegisteredSignal, ({ model, version }) => {
      if (model === args.training.model) registration.announced ??= version;
    });
  }
  return registration;
}

function trainingInput(args: ParsedChainInput, registration: Registration): TrainingPipelineInput {
  return registration.on ? { ...args.training, announceVersion: true } : args.training;
}

interface FeatureStage {
  /** One commit per feature group, in the order computed. */
  commits: FeaturePipelineResult[];
  /** The training run, when it was started with the feature runs. */
  trainingRun?: Promise<TrainingPipelineResult>;
}

/** Runs recorded before children-up-front: each feature run started once the one before it had finished. */
async function featuresInTurn(args: ParsedChainInput, workflowId: string, progress: PipelineProgress): Promise<FeatureStage> {
  const commits: FeaturePipelineResult[] = [];
  for (const featureGroup of args.features.groups) {
    const childId = `${workflowId}/features:${featureGroup}`;
    progress.details = { child: childId };
    commits.push(await executeChild(featurePipeline, { workflowId: childId, args: [{ featureGroup, start: args.features.start, end: args.features.end }] }));
    progress.done++;
  }
  return { commits };
}

/**
 * Starts every feature run and the training run in one workflow task, each but the
 * first waiting for the signal of the one before (workflows/upstream.ts), and returns
 * once every commit is made. A feature run that fails (or a cancel of the chain)
 * cancels the runs still waiting, and rethrows once all of them have ended.
 */
async function featuresUpFront(
  args: ParsedChainInput,
  chain: { workflowId: string; trainingId: string; training: TrainingPipelineInput; progress: PipelineProgress },
): Promise<FeatureStage> {
  const { groups, start, end } = args.features;
  const ids = groups.map((featureGroup) => `${chain.workflowId}/features:${featureGroup}`);
  const waiting = new CancellationScope();
  // The first feature run first: the server starts the children in this order, and the
  // first one works at once while the others only wait.
  const [features, training] = await waiting.run(() =>
    Promise.all([
      Promise.all(
        groups.map((featureGroup, i) =>
          startChild(featurePipeline, { workflowId: ids[i] as string, args: [{ featureGroup, start, end, ...(i > 0 ? { awaitUpstream: true } : {}), downstream: ids[i + 1] ?? chain.trainingId }] }),
        ),
      ),
      startChild(trainingPipeline, { workflowId: chain.trainingId, args: [{ ...chain.training, awaitUpstream: true }] }),
    ]),
  );
  const trainingRun = training.result();
  const results = features.map((child) => child.result());
  // Each is awaited below; until then a rejection (a cancel) must not count as unhandled.
  for (const result of [trainingRun, ...results]) result.catch(() => undefined);
  const commits: FeaturePipelineResult[] = [];
  try {
    for (const [i, result] of results.entries()) {
      chain.progress.details = { child: ids[i] };
      commits.push(await result);
      chain.progress.done++;
    }
  } catch (err) {
    waiting.cancel();
    await Promise.allSettled([trainingRun, ...results]);
    throw err;
  }
  return { commits, trainingRun };
}
