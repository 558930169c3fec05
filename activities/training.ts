/**
 * Training pipeline activities. The dataset, evaluation, registration and
 * promotion run on the CPU pool; `trainModel` runs on the GPU pool. Only references
 * (dataset id, run key, model version) pass between them: the trained model waits
 * in the run's checkpoint row until it is registered.
 */
import { activityInfo, Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../core/errors.ts';
import type { PromotionPolicy } from '../core/inputs.ts';
import type { Catalog } from '../features/catalog.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import type { LoadedBackend } from '../ml/backend.ts';
import { toBatches } from '../ml/batches.ts';
import { checkpointOf, restoreCheckpoint } from '../ml/checkpoint.ts';
import { createEncoder, fitSignature, type FeatureSpec } from '../ml/encoding.ts';
import { evaluateClassifier, evaluateRegressor } from '../ml/metrics.ts';
import { buildModel, TrainParamsSchema, type TrainParams } from '../ml/model.ts';
import { modelFromArtifact } from '../ml/artifact.ts';
import { collectPredictions } from '../ml/predict.ts';
import { trainModel as runTraining } from '../ml/train.ts';
import { getFeatureViewById, registerFeatureView } from '../registry/feature-views.ts';
import { ModelRegistry } from '../registry/model-registry.ts';
import { deleteCheckpoint, loadCheckpoint, saveCheckpoint } from '../registry/training-checkpoints.ts';
import { createTrainingDataset, getTrainingDataset, streamSplit, type Split, type TrainingDataset } from '../registry/training-datasets.ts';
import { trainingEpochSignal, type TrainingEpoch } from '../workflows/progress.ts';
import { codeVersion } from './code-version.ts';
import { withDomainFailures } from './failures.ts';
import { heartbeatWhile } from './heartbeat.ts';

export interface DatasetRef {
  trainingDatasetId: number;
  featureView: { name: string; version: number };
  rowCounts: Record<Split, number>;
  commits: Array<{ featureGroup: string; version: number; commitId: number }>;
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
const SHUFFLE_BUFFER = 8192;

export function parseTrainParams(params: unknown): TrainParams {
  const parsed = TrainParamsSchema.safeParse(params ?? {});
  if (!parsed.success) throw new FtiError(FailureType.InvalidInput, `invalid training params: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** What the model is trained on: one spec per feature of the view, in the view's order. */
function featureSpecs(view: FeatureViewDefinition): FeatureSpec[] {
  return view.features.map((f): FeatureSpec => {
    switch (f.encoding.encoding) {
      case 'standardize':
        if (f.dtype === 'string') throw new FtiError(FailureType.InvalidInput, `feature ${f.name} is text; it must be one_hot encoded`);
        return { name: f.name, dtype: f.dtype, encoding: 'standardize', missingIndicator: f.encoding.missingIndicator ?? false };
      case 'one_hot':
        return { name: f.name, dtype: f.dtype, encoding: 'one_hot', ...(f.encoding.maxCategories ? { maxCategories: f.encoding.maxCategories } : {}) };
      case 'cyclical':
        if (f.dtype !== 'float' && f.dtype !== 'int') throw new FtiError(FailureType.InvalidInput, `feature ${f.name} must be numeric for cyclical encoding`);
        return { name: f.name, dtype: f.dtype, encoding: 'cyclical', period: f.encoding.period };
    }
  });
}

function splitBatches(knex: Knex, dataset: TrainingDataset, view: FeatureViewDefinition, split: Split, encoder: ReturnType<typeof createEncoder>, params: TrainParams, shuffle: boolean) {
  const columns = [...view.features.map((f) => f.name), view.label.name];
  return (epoch: number) =>
    toBatches(streamSplit(knex, dataset, split, columns, params.batchSize * 4), encoder, {
      label: view.label.name,
      batchSize: params.batchSize,
      ...(shuffle ? { shuffleBuffer: SHUFFLE_BUFFER, seed: epoch } : {}),
    });
}

async function datasetAndView(knex: Knex, trainingDatasetId: number) {
  const dataset = await getTrainingDataset(knex, trainingDatasetId);
  const view = (await getFeatureViewById(knex, dataset.featureViewId)).definition;
  return { dataset, view };
}

/** CPU pool: datasets, evaluation, registration, promotion, cleanup. */
export function createTrainingActivities({ knex, views, backend }: { knex: Knex; views: Catalog<FeatureViewDefinition>; backend: LoadedBackend | null }) {
  const registry = new ModelRegistry({ knex });
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
      const view = await registerFeatureView(knex, views.get(input.featureView, input.version));
      const info = activityInfo();
      const key = `${info.workflowExecution?.workflowId ?? 'activity'}/${info.workflowExecution?.runId ?? info.activityId}/dataset`;
      const date = (s?: string) => (s ? new Date(s) : undefined);
      const dataset = await heartbeatWhile(
        () => ({ stage: 'dataset' }),
        createTrainingDataset(knex, view, {
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
      const { dataset, view } = await datasetAndView(knex, input.trainingDatasetId);
      return { trainingDatasetId: dataset.id, featureView: { name: view.name, version: view.version }, rowCounts: dataset.rowCounts, commits: dataset.commits };
    },

    /** Metrics of the trained model on the held-out test split. */
    async evaluateModel(input: { runKey: string; trainingDatasetId: number }): Promise<EvaluationMetrics> {
      if (!backend) throw new Error('this worker has no TensorFlow.js backend loaded');
      const stored = await loadCheckpoint(knex, input.runKey);
      if (!stored) throw new FtiError(FailureType.NotFound, `no trained model for run ${input.runKey}`);
      const { dataset, view } = await datasetAndView(knex, input.trainingDatasetId);
      if (dataset.rowCounts.test === 0) throw new FtiError(FailureType.InvalidInput, `training dataset ${dataset.id} has an empty test split`);
      const tf = backend.tf;
      const model = await modelFromArtifact(tf, stored.checkpoint.artifact);
      try {
        const encoder = createEncoder(stored.signature);
        const params = { batchSize: 4096 } as TrainParams;
        const { labels, scores } = await heartbeatWhile(() => ({ stage: 'evaluate' }), collectPredictions(tf, model, splitBatches(knex, dataset, view, 'test', encoder, params, false)(1)));
        const metrics = view.outputKind === 'binary_classifier' ? evaluateClassifier(labels, scores) : evaluateRegressor(labels, scores);
        // Only finite numbers are stored (an undefined metric, e.g. AUC of one class, is left out).
        return Object.fromEntries(Object.entries(metrics).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1])));
      } finally {
        model.dispose();
      }
    },

    /** Registers the trained model as the next version, with its full lineage (idempotent per run). */
    async registerModel(input: { runKey: string; model: string; trainingDatasetId: number; params?: Record<string, unknown>; metrics: EvaluationMetrics; training: TrainResult }): Promise<RegisteredModel> {
      const stored = await loadCheckpoint(knex, input.runKey);
      if (!stored) throw new FtiError(FailureType.NotFound, `no trained model for run ${input.runKey}`);
      const { dataset, view } = await datasetAndView(knex, input.trainingDatasetId);
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
      await deleteCheckpoint(knex, input.runKey);
    },
  });
}

/** GPU pool: the training loop itself, resumable from the run's last checkpoint. */
export function createGpuTrainingActivities({ knex, backend }: { knex: Knex; backend: LoadedBackend | null }) {
  return withDomainFailures({
    async trainModel(input: { runKey: string; trainingDatasetId: number; params?: Record<string, unknown> }): Promise<TrainResult> {
      if (!backend) throw new Error('this worker has no TensorFlow.js backend loaded');
      const tf = backend.tf;
      const params = parseTrainParams(input.params);
      const { dataset, view } = await datasetAndView(knex, input.trainingDatasetId);
      const context = Context.current();
      const started = Date.now();

      const resumed = await loadCheckpoint(knex, input.runKey);
      const signature = resumed?.signature ?? fitSignature(featureSpecs(view), dataset.statistics, { name: view.label.name, kind: view.outputKind });
      const encoder = createEncoder(signature);
      const { epochs: _epochs, batchSize: _batchSize, ...spec } = params;
      const model = resumed ? await restoreCheckpoint(tf, resumed.checkpoint, spec, view.outputKind) : buildModel(tf, spec, encoder.width, view.outputKind);
      const initialEpoch = resumed?.checkpoint.epoch ?? 0;
      const history = [...(resumed?.history ?? [])];
      context.log.info('training', { run: input.runKey, dataset: dataset.id, rows: dataset.rowCounts, width: encoder.width, backend: backend.name, resumedFromEpoch: initialEpoch });

      try {
        const result = await runTraining({
          tf,
          model,
          epochs: params.epochs,
          initialEpoch,
          trainBatches: splitBatches(knex, dataset, view, 'train', encoder, params, true),
          validationBatches: dataset.rowCounts.validation > 0 ? splitBatches(knex, dataset, view, 'validation', encoder, params, false) : undefined,
          onBatch: (p) => context.heartbeat({ epoch: p.epoch, batches: p.batches, samples: p.samples, lastEpoch: history.at(-1) }),
          shouldStop: () => context.cancellationSignal.aborted,
          onEpochEnd: async (p) => {
            history.push(p);
            await saveCheckpoint(knex, { runKey: input.runKey, checkpoint: await checkpointOf(tf, model, p.epoch), signature, history });
            const progress = { epoch: p.epoch, epochs: p.epochs, loss: p.loss, valLoss: p.valLoss, samplesPerSecond: p.samplesPerSecond };
            context.heartbeat(progress);
            await reportEpoch(context, progress);
          },
        });
        if (result.stoppedEarly) throw new CancelledFailure('training was cancelled');
        const last = history.at(-1);
        return {
          runKey: input.runKey,
          epochs: result.lastEpoch,
          resumedFromEpoch: initialEpoch,
          finalLoss: last?.loss ?? Number.NaN,
          finalValLoss: last?.valLoss,
          samplesPerSecond: result.samplesPerSecond,
          trainingSeconds: (Date.now() - started) / 1000,
          tfjsBackend: backend.name,
          device: backend.device,
        };
      } finally {
        model.dispose();
      }
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

