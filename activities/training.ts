/**
 * Training pipeline activities. The dataset, evaluation, registration and
 * promotion run on the CPU pool; `trainModel` runs on the GPU pool. Only references
 * (dataset id, run key, model version) pass between them: the trained model waits
 * in the run's checkpoint row until it is registered.
 */
import { activityInfo, Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import { FtiError, FailureType, parseOrThrow } from '../core/errors.ts';
import type { PromotionPolicy } from '../core/inputs.ts';
import { trainingEpochSignal, type TrainingEpoch } from '../core/progress.ts';
import type { FeatureGroupCommitRef } from '../core/refs.ts';
import type { Catalog } from '../features/catalog.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import type { LoadedBackend } from '../ml/backend.ts';
import { evaluateClassifier, evaluateRegressor } from '../ml/metrics.ts';
import { modelFromArtifact } from '../ml/artifact.ts';
import { createEncoder } from '../ml/encoding.ts';
import { TrainParamsSchema, type TrainParams } from '../ml/model.ts';
import { collectPredictions } from '../ml/predict.ts';
import type { ModelRegistry } from '../registry/models/index.ts';
import type { Split } from '../registry/training/index.ts';
import { codeVersion } from './code-version.ts';
import { withDomainFailures } from './failures.ts';
import { heartbeatWhile } from './heartbeat.ts';
import { datasetAndView, splitBatches, trainOnDataset, type TrainingRunStores } from './training-run.ts';

export interface DatasetRef {
  trainingDatasetId: number;
  featureView: { name: string; version: number };
  rowCounts: Record<Split, number>;
  commits: FeatureGroupCommitRef[];
}

export interface TrainResult {
  runKey: string;
  epochs: number;
  /** Epochs already done when this attempt started (0 unless a retry resumed a checkpoint). */
  resumedFromEpoch: number;
  finalLoss: number;
  finalValLoss?: number;
  samplesPerSecond: number;
  trainingSeconds: number;
  tfjsBackend: string;
  device: string;
}

export type EvaluationMetrics = Record<string, number>;

export interface RegisteredModel {
  model: string;
  version: number;
  created: boolean;
}

export interface PromotionDecision {
  promoted: boolean;
  alias: string;
  metric: string;
  candidate: { version: number; value: number | null };
  /** The version the alias pointed at before, and its value of the metric. */
  incumbent: { version: number; value: number | null } | null;
  reason: string;
}

const LOWER_IS_BETTER = new Set(['logLoss', 'rmse', 'mae']);

export function parseTrainParams(params: unknown): TrainParams {
  return parseOrThrow(TrainParamsSchema, params ?? {}, 'training params', { root: 'params' });
}

export interface TrainingActivityDeps extends TrainingRunStores {
  registry: ModelRegistry;
  /** The deployment's feature view definitions (FTI_DEFINITIONS). */
  views: Catalog<FeatureViewDefinition>;
  backend: LoadedBackend | null;
}

/** CPU pool: datasets, evaluation, registration, promotion, cleanup. */
export function createTrainingActivities({ features, training, registry, views, backend }: TrainingActivityDeps) {
  const stores = { features, training };
  return withDomainFailures({
    /** Registers the view and materializes its point-in-time dataset (idempotent per workflow run). */
    async createTrainingDataset(input: {
      featureView: string;
      version?: number;
      params?: Record<string, unknown>;
      start?: string;
      end?: string;
      validationStart?: string;
      testStart?: string;
    }): Promise<DatasetRef> {
      parseTrainParams(input.params); // fail fast, before any work
      const view = await features.registerView(views.get(input.featureView, input.version));
      const info = activityInfo();
      const key = `${info.workflowExecution?.workflowId ?? 'activity'}/${info.workflowExecution?.runId ?? info.activityId}/dataset`;
      const date = (s?: string) => (s ? new Date(s) : undefined);
      const dataset = await heartbeatWhile(
        () => ({ stage: 'dataset' }),
        training.createDataset(view, {
          idempotencyKey: key,
          workflowId: info.workflowExecution?.workflowId,
          start: date(input.start),
          end: date(input.end),
          validationStart: date(input.validationStart),
          testStart: date(input.testStart),
        }),
      );
      return { trainingDatasetId: dataset.id, featureView: { name: view.definition.name, version: view.definition.version }, rowCounts: dataset.rowCounts, commits: dataset.commits };
    },

    async describeTrainingDataset(input: { trainingDatasetId: number }): Promise<DatasetRef> {
      const { dataset, view } = await datasetAndView(stores, input.trainingDatasetId);
      return { trainingDatasetId: dataset.id, featureView: { name: view.name, version: view.version }, rowCounts: dataset.rowCounts, commits: dataset.commits };
    },

    /** Metrics of the trained model on the held-out test split. */
    async evaluateModel(input: { runKey: string; trainingDatasetId: number }): Promise<EvaluationMetrics> {
      if (!backend) throw new Error('this worker has no TensorFlow.js backend loaded');
      const stored = await training.loadCheckpoint(input.runKey);
      if (!stored) throw new FtiError(FailureType.NotFound, `no trained model for run ${input.runKey}`);
      const { dataset, view } = await datasetAndView(stores, input.trainingDatasetId);
      if (dataset.rowCounts.test === 0) throw new FtiError(FailureType.InvalidInput, `training dataset ${dataset.id} has an empty test split`);
      const tf = backend.tf;
      const model = await modelFromArtifact(tf, stored.checkpoint.artifact);
      try {
        const encoder = createEncoder(stored.signature);
        const { labels, scores } = await heartbeatWhile(() => ({ stage: 'evaluate' }), collectPredictions(tf, model, splitBatches(training, dataset, view, 'test', encoder, 4096, false)(1)));
        const metrics = view.outputKind === 'binary_classifier' ? evaluateClassifier(labels, scores) : evaluateRegressor(labels, scores);
        // Only finite numbers are stored (an undefined metric, e.g. AUC of one class, is left out).
        return Object.fromEntries(Object.entries(metrics).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1])));
      } finally {
        model.dispose();
      }
    },

    /** Registers the trained model as the next version, with its full lineage (idempotent per run). */
    async registerModel(input: { runKey: string; model: string; trainingDatasetId: number; params?: Record<string, unknown>; metrics: EvaluationMetrics; training: TrainResult }): Promise<RegisteredModel> {
      const stored = await training.loadCheckpoint(input.runKey);
      if (!stored) throw new FtiError(FailureType.NotFound, `no trained model for run ${input.runKey}`);
      const { dataset, view } = await datasetAndView(stores, input.trainingDatasetId);
      const info = activityInfo();
      const result = await registry.registerModelVersion({
        name: input.model,
        artifact: stored.checkpoint.artifact,
        signature: stored.signature,
        metrics: input.metrics,
        params: { ...parseTrainParams(input.params), epochs: input.training.epochs },
        idempotencyKey: `${input.runKey}/register`,
        description: `trained on ${view.name} v${view.version}, dataset ${dataset.id}`,
        lineage: {
          featureView: { name: view.name, version: view.version },
          trainingDatasetId: dataset.id,
          featureGroupCommits: dataset.commits,
          workflowId: info.workflowExecution?.workflowId,
          runId: info.workflowExecution?.runId,
          codeVersion: codeVersion() ?? undefined,
          tfjsBackend: input.training.tfjsBackend,
          trainedAt: new Date().toISOString(),
          trainingSeconds: input.training.trainingSeconds,
        },
      });
      return { model: input.model, version: result.version.version, created: result.created };
    },

    /** Moves the alias to the new version only if it beats the current holder on the metric. */
    async promoteModel(input: { model: string; version: number; policy: PromotionPolicy }): Promise<PromotionDecision> {
      const { alias, metric, minDelta } = input.policy;
      const candidate = await registry.getModelVersion(input.model, input.version);
      const candidateValue = candidate.metrics[metric] ?? null;
      const current = await registry.listAliases(input.model).then((all) => all.find((a) => a.alias === alias));
      const incumbentVersion = current ? await registry.getModelVersion(input.model, current.version) : undefined;
      const incumbent = incumbentVersion ? { version: incumbentVersion.version, value: incumbentVersion.metrics[metric] ?? null } : null;
      const base = { alias, metric, candidate: { version: input.version, value: candidateValue } };
      if (candidateValue === null) return { ...base, promoted: false, incumbent, reason: `version ${input.version} has no ${metric}` };
      if (incumbent?.version === input.version) return { ...base, promoted: true, incumbent, reason: `${alias} already points at version ${input.version}` };
      const lower = LOWER_IS_BETTER.has(metric);
      const beats = incumbent === null || incumbent.value === null || (lower ? candidateValue < incumbent.value - minDelta : candidateValue > incumbent.value + minDelta);
      if (!beats) {
        return { ...base, promoted: false, incumbent, reason: `${metric} ${fmt(candidateValue)} does not beat version ${incumbent?.version}'s ${fmt(incumbent?.value ?? null)} by more than ${minDelta}` };
      }
      await registry.setAlias(input.model, alias, input.version, { actor: activityInfo().workflowExecution?.workflowId ?? 'training pipeline', reason: `promotion policy: ${metric}` });
      const reason = incumbent ? `${metric} ${fmt(candidateValue)} beats version ${incumbent.version}'s ${fmt(incumbent.value)} by more than ${minDelta}` : `${alias} was not set`;
      return { ...base, promoted: true, incumbent, reason };
    },

    /** Drops the run's checkpoint once the model is registered (or the run gave up). */
    async cleanupTraining(input: { runKey: string }): Promise<void> {
      await training.deleteCheckpoint(input.runKey);
    },
  });
}

/** GPU pool: the training loop itself, resumable from the run's last checkpoint. */
export function createGpuTrainingActivities({ features, training, backend }: TrainingRunStores & { backend: LoadedBackend | null }) {
  return withDomainFailures({
    async trainModel(input: { runKey: string; trainingDatasetId: number; params?: Record<string, unknown> }): Promise<TrainResult> {
      if (!backend) throw new Error('this worker has no TensorFlow.js backend loaded');
      const context = Context.current();
      const resumed = await training.loadCheckpoint(input.runKey);
      const run = await trainOnDataset({
        stores: { features, training },
        backend,
        trainingDatasetId: input.trainingDatasetId,
        params: parseTrainParams(input.params),
        resume: resumed,
        log: (message, attrs) => context.log.info(message, attrs),
        onBatch: (p, history) => context.heartbeat({ epoch: p.epoch, batches: p.batches, samples: p.samples, lastEpoch: history.at(-1) }),
        shouldStop: () => context.cancellationSignal.aborted,
        onEpochEnd: async (epoch, snapshot) => {
          await training.saveCheckpoint({ runKey: input.runKey, ...(await snapshot()) });
          const progress = { epoch: epoch.epoch, epochs: epoch.epochs, loss: epoch.loss, valLoss: epoch.valLoss, samplesPerSecond: epoch.samplesPerSecond };
          context.heartbeat(progress);
          await reportEpoch(context, progress);
        },
      });
      if (run.stoppedEarly) throw new CancelledFailure('training was cancelled');
      const last = run.history.at(-1);
      return {
        runKey: input.runKey,
        epochs: run.lastEpoch,
        resumedFromEpoch: run.resumedFromEpoch,
        finalLoss: last?.loss ?? Number.NaN,
        finalValLoss: last?.valLoss,
        samplesPerSecond: run.samplesPerSecond,
        trainingSeconds: run.seconds,
        tfjsBackend: backend.name,
        device: backend.device,
      };
    },
  });
}

/** Tells the workflow about the epoch (its progress query is then live); best effort. */
async function reportEpoch(context: Context, progress: TrainingEpoch): Promise<void> {
  const workflowId = context.info.workflowExecution?.workflowId;
  if (!workflowId) return;
  try {
    await context.client.workflow.getHandle(workflowId).signal(trainingEpochSignal, progress);
  } catch (err) {
    context.log.warn('could not report the epoch to the workflow', { error: String(err) });
  }
}

function fmt(value: number | null): string {
  return value === null ? 'n/a' : value.toFixed(4);
}

