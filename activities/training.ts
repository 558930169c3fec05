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
import { loadBackend, type LoadedBackend } from '../ml/backend.ts';
import { evaluateClassifier, evaluateRegressor } from '../ml/metrics.ts';
import { createEncoder } from '../ml/encoding.ts';
import { readAhead } from '../core/streams.ts';
import { TrainParamsSchema, type TrainParams } from '../ml/model.ts';
import { collectScores } from '../ml/predict.ts';
import { loadPredictor } from '../ml/predictor.ts';
import type { EpochProgress } from '../ml/train.ts';
import { loadScoringModel, type ScoredRows, type ScoringDeps, type ScoringModel } from '../ml/scoring.ts';
import type { FeatureRow } from '../ml/values.ts';
import type { ViewSnapshot } from '../registry/feature-store/index.ts';
import type { ModelRegistry, ModelVersion } from '../registry/models/index.ts';
import type { Split, SplitRowThroughView, StoredCheckpoint, TrainingDataset } from '../registry/training/index.ts';
import { boostOnDataset } from './boosting-run.ts';
import { codeVersion as detectCodeVersion, requireCodeVersion } from './code-version.ts';
import { withDomainFailures } from './failures.ts';
import { heartbeatProgress, heartbeatWhile } from './heartbeat.ts';
import { observeEpoch } from './observability.ts';
import { datasetAndView, splitBatches, trainOnDataset, type TrainingRunStores, type TrainOnDatasetResult } from './training-run.ts';
import { signalFromActivity } from './context.ts';

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
  /**
   * An MLP's samples/s epoch by epoch, resumed epochs included (absent for trees, and in
   * histories recorded before it was reported): the first reads its splits from Postgres,
   * later ones replay them when the run kept them (FTI_EPOCH_CACHE_MB).
   */
  epochSamplesPerSecond?: number[];
  /** The train split's rows the model was fitted on: all of them, or gbdt's maxRows sample (absent in histories recorded before it was reported). */
  trainingRows?: number;
  trainingSeconds: number;
  tfjsBackend: string;
  device: string;
  /** The code version of the worker that trained it (absent in histories recorded before it was reported). */
  codeVersion?: string;
}

export type EvaluationMetrics = Record<string, number>;

export interface RegisteredModel {
  model: string;
  version: number;
  created: boolean;
}

/**
 * What promotion decided, and on what. The decision compares both versions on the
 * same rows: the candidate's held-out validation split, the incumbent scored through
 * its own feature view. The test split only reports.
 */
export interface PromotionDecision {
  promoted: boolean;
  alias: string;
  metric: string;
  /** `value`: the candidate's stored test-split metric, reported only (the test split never decides). */
  candidate: { version: number; value: number | null };
  /**
   * The version the alias pointed at when the decision was made (after any
   * compare-and-set retry); `value` is its stored test metric, measured on its own
   * dataset's test window: reported only, never compared.
   */
  incumbent: { version: number; value: number | null } | null;
  /** The comparison that decided; null when nothing was scored (the alias already pointed at the candidate). */
  validation: PromotionComparison | null;
  /** Compare-and-set attempts: more than 1 when the alias moved while this decided, and it decided again. */
  attempts: number;
  reason: string;
}

/** Both versions scored on the same rows of the candidate's validation split. */
export interface PromotionComparison {
  trainingDatasetId: number;
  split: 'validation';
  /** Rows both versions scored (a row either could not score is left out for both). */
  rows: number;
  /** Rows of the split left out: not rebuilt by the incumbent's view, or failing a signature. */
  rowsLeftOut: number;
  /** `value`: the policy's metric on these rows; `metrics`: all of them. */
  candidate: { version: number; value: number | null; metrics: Record<string, number> };
  /**
   * `through`: 'dataset' when its lineage names the dataset's feature view (it read the
   * dataset's rows), 'view' when its own view was rebuilt point-in-time for the same
   * spine rows as of `commits` (the dataset's commits where the groups coincide).
   */
  incumbent: {
    version: number;
    value: number | null;
    metrics: Record<string, number>;
    featureView: { name: string; version: number };
    through: 'dataset' | 'view';
    commits?: FeatureGroupCommitRef[];
  } | null;
}

const LOWER_IS_BETTER = new Set(['logLoss', 'rmse', 'mae']);
/** Compare-and-set attempts of one promotion before it gives up (the alias keeps moving under it). */
export const PROMOTION_ATTEMPTS = 5;
/** Up to this many validation rows the incumbent's view is joined row by row (LATERAL), above it set-based. */
const LATERAL_MAX_ROWS = 50_000;

export function parseTrainParams(params: unknown): TrainParams {
  return parseOrThrow(TrainParamsSchema, params ?? {}, 'training params', { root: 'params' });
}

export interface TrainingActivityDeps extends TrainingRunStores {
  registry: ModelRegistry;
  /** The deployment's feature view definitions (FTI_DEFINITIONS). */
  views: Catalog<FeatureViewDefinition>;
  backend: LoadedBackend | null;
  /** This worker's code version (default: FTI_CODE_VERSION, else git); see code-version.ts. */
  codeVersion?: () => string | null;
}

/** CPU pool: datasets, evaluation, registration, promotion, cleanup. */
export function createTrainingActivities({ features, training, registry, views, backend, codeVersion = detectCodeVersion }: TrainingActivityDeps) {
  const stores = { features, training };
  const tfjs = async () => (backend ?? (await loadBackend('cpu'))).tf;
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
      chunks?: number;
    }): Promise<DatasetRef> {
      parseTrainParams(input.params); // fail fast, before any work
      requireCodeVersion(codeVersion()); // the same: outside development, registration would refuse
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
          ...(input.chunks ? { chunks: input.chunks } : {}),
          signal: Context.current().cancellationSignal,
          onResume: (chunks) => Context.current().log.info('training dataset build resumed', { kept: chunks }),
        }),
      );
      return { trainingDatasetId: dataset.id, featureView: { name: view.definition.name, version: view.definition.version }, rowCounts: dataset.rowCounts, commits: dataset.commits };
    },

    async describeTrainingDataset(input: { trainingDatasetId: number }): Promise<DatasetRef> {
      requireCodeVersion(codeVersion()); // fail fast, before training
      const { dataset, view } = await datasetAndView(stores, input.trainingDatasetId);
      return { trainingDatasetId: dataset.id, featureView: { name: view.name, version: view.version }, rowCounts: dataset.rowCounts, commits: dataset.commits };
    },

    /** Metrics of the trained model on the held-out test split. */
    async evaluateModel(input: { runKey: string; trainingDatasetId: number }): Promise<EvaluationMetrics> {
      const stored = await training.loadCheckpoint(input.runKey);
      if (!stored) throw new FtiError(FailureType.NotFound, `no trained model for run ${input.runKey}`);
      const { dataset, view } = await datasetAndView(stores, input.trainingDatasetId);
      if (dataset.rowCounts.test === 0) throw new FtiError(FailureType.InvalidInput, `training dataset ${dataset.id} has an empty test split`);
      const predictor = await loadPredictor(await tfjs(), stored.checkpoint.artifact);
      try {
        const encoder = createEncoder(stored.signature);
        const { labels, scores } = await heartbeatWhile(() => ({ stage: 'evaluate' }), collectScores((x, size) => predictor.predict(x, size), splitBatches(training, dataset, view, 'test', encoder, 4096, false)(1)));
        return evaluate(view, labels, scores);
      } finally {
        predictor.dispose();
      }
    },

    /** Registers the trained model as the next version, with its full lineage (idempotent per run). */
    async registerModel(input: { runKey: string; model: string; trainingDatasetId: number; params?: Record<string, unknown>; metrics: EvaluationMetrics; training: TrainResult }): Promise<RegisteredModel> {
      // The trainer's code version when it reported one, else this worker's; outside development one is required.
      const code = requireCodeVersion(input.training.codeVersion ?? codeVersion());
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
          codeVersion: code,
          tfjsBackend: input.training.tfjsBackend,
          trainedAt: new Date().toISOString(),
          trainingSeconds: input.training.trainingSeconds,
        },
      });
      return { model: input.model, version: result.version.version, created: result.created };
    },

    /**
     * Moves the alias to the new version only if it beats the holder on the same rows:
     * both scored on the candidate's validation split (the holder through its own
     * feature view). The move is a compare-and-set under the model's lock; if the alias
     * moved meanwhile, the new holder is compared on the same rows, and so on
     * (PROMOTION_ATTEMPTS at most). A retry after the alias moved here returns promoted.
     */
    async promoteModel(input: { model: string; version: number; policy: PromotionPolicy }): Promise<PromotionDecision> {
      const { alias, metric, minDelta } = input.policy;
      const actor = activityInfo().workflowExecution?.workflowId ?? 'training pipeline';
      const candidate = await registry.getModelVersion(input.model, input.version);
      const stored = (v: ModelVersion) => ({ version: v.version, value: v.metrics[metric] ?? null });
      const holderOf = async () => (await registry.listAliases(input.model)).find((a) => a.alias === alias)?.version ?? null;
      let held = await holderOf();
      const already = (attempts: number): PromotionDecision => ({
        promoted: true,
        alias,
        metric,
        candidate: stored(candidate),
        incumbent: stored(candidate),
        validation: null,
        attempts,
        reason: `${alias} already points at version ${input.version}`,
      });
      if (held === input.version) return already(1);

      const datasetId = candidate.lineage.trainingDatasetId;
      if (datasetId === undefined) {
        throw new FtiError(FailureType.InvalidInput, `model ${input.model} v${input.version} records no training dataset in its lineage: promotion compares on its validation split`, { model: input.model, version: input.version });
      }
      const { dataset, view } = await datasetAndView(stores, datasetId);
      const deps = { models: registry, views: features, tf: await tfjs() };
      const judge = await loadScoringModel(deps, input.model, input.version);
      try {
        for (let attempts = 1; ; attempts++) {
          const incumbent = held === null ? null : await registry.getModelVersion(input.model, held);
          const scored = await heartbeatWhile(() => ({ stage: 'promote', attempt: attempts }), compareOnValidation({ stores, deps, judge, incumbent, dataset, view, metric }));
          const base = { alias, metric, candidate: stored(candidate), incumbent: incumbent ? stored(incumbent) : null, attempts };
          const moved = attempts > 1 ? ` (the alias moved while this decided; compared again with version ${held ?? 'none'})` : '';
          if ('refused' in scored) return { ...base, promoted: false, validation: null, reason: scored.refused + moved };
          const { comparison } = scored;
          const c = comparison.candidate.value;
          const i = comparison.incumbent;
          const where = `on the same ${comparison.rows} validation rows of dataset ${dataset.id}`;
          if (c === null) return { ...base, promoted: false, validation: comparison, reason: `version ${input.version} has no validation ${metric} ${where}${moved}` };
          const lower = LOWER_IS_BETTER.has(metric);
          const beats = i === null || i.value === null || (lower ? c < i.value - minDelta : c > i.value + minDelta);
          if (!beats) {
            const reason = `validation ${metric} ${fmt(c)} does not beat version ${i.version}'s ${fmt(i.value)} ${where} by more than ${minDelta}${moved}`;
            return { ...base, promoted: false, validation: comparison, reason };
          }
          const reason = i
            ? `validation ${metric} ${fmt(c)} beats version ${i.version}'s ${fmt(i.value)} ${where} by more than ${minDelta}${moved}`
            : `${alias} was not set (validation ${metric} ${fmt(c)} on ${comparison.rows} rows of dataset ${dataset.id})${moved}`;
          try {
            await registry.setAlias(input.model, alias, input.version, { actor, reason: `promotion policy: ${reason}`, expectedVersion: held });
            return { ...base, promoted: true, validation: comparison, reason };
          } catch (err) {
            if (!(err instanceof FtiError && err.type === FailureType.Conflict)) throw err;
            Context.current().log.info('the alias moved while promoting; comparing again', { model: input.model, alias, expected: held, error: err.message });
            held = await holderOf();
            if (held === input.version) return already(attempts + 1);
            if (attempts >= PROMOTION_ATTEMPTS) {
              return { ...base, promoted: false, validation: comparison, reason: `${alias} moved ${attempts} times while this decided (now version ${held ?? 'none'}); not promoted, run the promotion again` };
            }
          }
        }
      } finally {
        judge.dispose();
      }
    },

    /** Drops the run's checkpoint once the model is registered (or the run gave up). */
    async cleanupTraining(input: { runKey: string }): Promise<void> {
      await training.deleteCheckpoint(input.runKey);
    },
  });
}

/** How long after its last batch the GPU train activity keeps heartbeating: then a hung read lets the heartbeat time out. */
const BATCH_STALL_MS = 60_000;

/** GPU pool: the training loop itself, resumable from the run's last checkpoint. */
export function createGpuTrainingActivities({ features, training, backend, epochCacheBytes }: TrainingRunStores & { backend: LoadedBackend | null; epochCacheBytes: number }) {
  return withDomainFailures({
    // `model` names the series of the worker's training metrics (absent in histories recorded before it was passed).
    async trainModel(input: { runKey: string; trainingDatasetId: number; params?: Record<string, unknown>; model?: string }): Promise<TrainResult> {
      const params = parseTrainParams(input.params);
      const context = Context.current();
      const resumed = await training.loadCheckpoint(input.runKey);
      const saveCheckpoint = async (epoch: EpochProgress, snapshot: () => Promise<Omit<StoredCheckpoint, 'runKey'>> | Omit<StoredCheckpoint, 'runKey'>) => {
        await heartbeatWhile(
          () => ({ stage: 'checkpoint', epoch: epoch.epoch }),
          (async () => training.saveCheckpoint({ runKey: input.runKey, ...(await snapshot()) }))(),
          2_000,
        );
        const progress: TrainingEpoch = { epoch: epoch.epoch, epochs: epoch.epochs, loss: epoch.loss, valLoss: epoch.valLoss, samplesPerSecond: epoch.samplesPerSecond, unit: params.family === 'gbdt' ? 'round' : 'epoch' };
        context.heartbeat(progress);
        observeEpoch(epoch);
        // Not the last: its result reaches the workflow at once, which then shows it as the
        // last epoch. A signal now would land while the result is on its way and cost the
        // run a workflow task of its own before the next step (10-25 ms, README footnote 9).
        if (epoch.epoch < epoch.epochs) await reportEpoch(context, progress);
      };
      const common = { stores: { features, training }, trainingDatasetId: input.trainingDatasetId, resume: resumed, log: (message: string, attrs?: Record<string, unknown>) => context.log.info(message, attrs), shouldStop: () => context.cancellationSignal.aborted };
      let run: TrainOnDatasetResult;
      let engine: { tfjsBackend: string; device: string };
      if (params.family === 'gbdt') {
        // Trees need no TensorFlow.js: they boost on this worker's CPU in JavaScript.
        engine = { tfjsBackend: 'none', device: 'CPU (gradient-boosted trees in JavaScript)' };
        run = await boostOnDataset({
          ...common,
          params,
          // Heartbeats while the splits are read and after every round (a round is well under the GPU queue's heartbeat timeout).
          onProgress: (p) => context.heartbeat(p.stage === 'read' ? p : { stage: 'boost', round: p.round.epoch, loss: p.round.loss, valLoss: p.round.valLoss }),
          onCheckpoint: saveCheckpoint,
        });
      } else {
        if (!backend) throw new Error('this worker has no TensorFlow.js backend loaded');
        engine = { tfjsBackend: backend.name, device: backend.device };
        // Heartbeats while anything moves — training and validation batches, the checkpoint
        // save — so the GPU queue's short heartbeat timeout holds however big the data; and
        // between batches for up to a minute, so a pass waiting for its first batch (the
        // split reader's thread starting) does not outlast it.
        run = await heartbeatProgress(
          (beat) =>
            trainOnDataset({
              ...common,
              backend,
              params,
              epochCacheBytes,
              onBatch: (p, history) => beat({ epoch: p.epoch, batches: p.batches, samples: p.samples, lastEpoch: history.at(-1) }),
              onValidationBatch: (p) => beat({ stage: 'validation', epoch: p.epoch, batches: p.batches }),
              onEpochEnd: saveCheckpoint,
            }),
          { stallMs: BATCH_STALL_MS, initial: { stage: 'train' } },
        );
      }
      if (run.stoppedEarly) throw new CancelledFailure('training was cancelled');
      const last = run.history.at(-1);
      const code = detectCodeVersion();
      return {
        runKey: input.runKey,
        epochs: run.lastEpoch,
        resumedFromEpoch: run.resumedFromEpoch,
        finalLoss: last?.loss ?? Number.NaN,
        finalValLoss: last?.valLoss,
        samplesPerSecond: run.samplesPerSecond,
        ...(params.family === 'mlp' ? { epochSamplesPerSecond: run.history.map((h) => Math.round(h.samplesPerSecond)) } : {}),
        trainingRows: run.trainingRows,
        trainingSeconds: run.seconds,
        ...engine,
        ...(code ? { codeVersion: code } : {}),
      };
    },
  });
}

/** Metrics of scores against labels; only finite numbers are kept (an undefined metric, e.g. AUC of one class, is left out). */
function evaluate(view: FeatureViewDefinition, labels: ArrayLike<number>, scores: ArrayLike<number>): EvaluationMetrics {
  const metrics = view.outputKind === 'binary_classifier' ? evaluateClassifier(labels, scores) : evaluateRegressor(labels, scores);
  return Object.fromEntries(Object.entries(metrics).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1])));
}

interface CompareInput {
  stores: TrainingRunStores;
  deps: ScoringDeps;
  /** The candidate, loaded for scoring. */
  judge: ScoringModel;
  incumbent: ModelVersion | null;
  /** The candidate's training dataset and its feature view. */
  dataset: TrainingDataset;
  view: FeatureViewDefinition;
  metric: string;
}

/**
 * Scores the candidate and the incumbent on the same rows: the candidate's validation
 * split, read once; each row goes to both models, the incumbent seeing it through its
 * own feature view. `refused` says why the incumbent cannot be judged on these rows.
 */
async function compareOnValidation({ stores, deps, judge, incumbent, dataset, view, metric }: CompareInput): Promise<{ comparison: PromotionComparison } | { refused: string }> {
  const label = view.label.name;
  const columns = [...view.features.map((f) => f.name), label];
  let other: ScoringModel | null = null;
  try {
    let rows: AsyncIterable<SplitRowThroughView[]> | undefined;
    let commits: FeatureGroupCommitRef[] | undefined;
    if (incumbent) {
      const cannot = (why: string) => ({
        refused: `version ${incumbent.version} (holding the alias) cannot be scored on the validation rows of dataset ${dataset.id}: ${why}; the alias stays (move it by hand to override)`,
      });
      let snapshot: ViewSnapshot | undefined;
      try {
        other = await loadScoringModel(deps, incumbent.model, incumbent.version);
        const problem = incomparable(view, judge, other);
        if (problem) return cannot(problem);
        if (other.view.name !== view.name || other.view.version !== view.version) {
          // Its own view, for the same spine rows, as of the dataset's commits where the groups coincide (else their latest).
          const latest = await stores.features.latestSnapshot(other.view);
          commits = latest.commits.map((c) => dataset.commits.find((d) => d.featureGroup === c.featureGroup && d.version === c.version) ?? c);
          snapshot = await stores.features.pinnedSnapshot(other.view, commits);
        }
      } catch (err) {
        // Not registered, no feature view, a signature that does not fit it, a group without commits.
        if (err instanceof FtiError && (err.type === FailureType.InvalidInput || err.type === FailureType.NotFound)) return cannot(err.message);
        throw err;
      }
      if (snapshot) {
        const strategy = dataset.rowCounts.validation > LATERAL_MAX_ROWS ? 'window' : 'lateral';
        rows = stores.training.streamSplitThroughView(dataset, view, 'validation', columns, { view: other.view, snapshot, strategy });
      }
    }
    rows ??= sameRows(stores.training.streamSplit(dataset, 'validation', columns));

    const labels: number[] = [];
    const mine: number[] = [];
    const theirs: number[] = [];
    for await (const batch of readAhead(rows)) {
      const a = scoresByRow(await judge.scoreRows(batch.map((p) => p.row)));
      const b = other ? scoresByRow(await other.scoreRows(batch.map((p) => p.viewRow))) : null;
      for (const p of batch) {
        const y = labelOf(p.row[label]);
        const sa = a.get(p.row);
        const sb = b?.get(p.viewRow);
        if (y === null || sa === undefined || (b && sb === undefined)) continue;
        labels.push(y);
        mine.push(sa);
        if (sb !== undefined) theirs.push(sb);
      }
    }
    const metricsOf = (scores: number[]) => (labels.length > 0 ? evaluate(view, labels, scores) : {});
    const candidateMetrics = metricsOf(mine);
    const comparison: PromotionComparison = {
      trainingDatasetId: dataset.id,
      split: 'validation',
      rows: labels.length,
      rowsLeftOut: Math.max(0, dataset.rowCounts.validation - labels.length),
      candidate: { version: judge.version, value: candidateMetrics[metric] ?? null, metrics: candidateMetrics },
      incumbent: null,
    };
    if (other) {
      const metrics = metricsOf(theirs);
      comparison.incumbent = {
        version: other.version,
        value: metrics[metric] ?? null,
        metrics,
        featureView: { name: other.view.name, version: other.view.version },
        through: commits ? 'view' : 'dataset',
        ...(commits ? { commits } : {}),
      };
    }
    return { comparison };
  } finally {
    other?.dispose();
  }
}

/** Why the incumbent's outputs cannot be judged against the candidate's labels; null when they can. */
function incomparable(view: FeatureViewDefinition, candidate: ScoringModel, incumbent: ScoringModel): string | null {
  const kind = (m: ScoringModel) => m.record.signature.output.kind;
  if (kind(incumbent) !== kind(candidate)) return `it is a ${kind(incumbent)}, the candidate a ${kind(candidate)}`;
  if (incumbent.view.label.name !== view.label.name) return `its view ${incumbent.view.name} v${incumbent.view.version} predicts ${incumbent.view.label.name}, the candidate's ${view.name} v${view.version} predicts ${view.label.name}`;
  const a = incumbent.view.spine;
  const b = view.spine;
  if (a.eventTime !== b.eventTime || a.entityKeys.length !== b.entityKeys.length || !a.entityKeys.every((k) => b.entityKeys.includes(k))) {
    return `its view ${incumbent.view.name} v${incumbent.view.version} has another spine (${a.group} keyed by ${a.entityKeys.join(', ')}) than the candidate's ${view.name} v${view.version} (${b.group} keyed by ${b.entityKeys.join(', ')})`;
  }
  return null;
}

/** A split's own rows as pairs: both versions read the same row. */
async function* sameRows(batches: AsyncIterable<Array<Record<string, unknown>>>): AsyncGenerator<SplitRowThroughView[]> {
  for await (const batch of batches) yield batch.map((row) => ({ row, viewRow: row }));
}

/** The score of each row that fitted the signature, by row. */
function scoresByRow(scored: ScoredRows): Map<FeatureRow, number> {
  return new Map(scored.rows.map((row, i) => [row, scored.scores[i] as number]));
}

function labelOf(value: unknown): number | null {
  if (typeof value === 'boolean') return value ? 1 : 0;
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** Tells the workflow about the epoch (its progress query is then live); best effort. */
async function reportEpoch(context: Context, progress: TrainingEpoch): Promise<void> {
  const workflowId = context.info.workflowExecution?.workflowId;
  if (workflowId) await signalFromActivity(workflowId, trainingEpochSignal, [progress], 'report the epoch to the workflow');
}

function fmt(value: number | null): string {
  return value === null ? 'n/a' : value.toFixed(4);
}

