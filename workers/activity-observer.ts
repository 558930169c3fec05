/**
 * The worker's activity interceptor: every activity execution, at its boundary, feeds
 * the worker's metrics (activities/observability.ts) and logs.
 *
 *   - what it works on (feature group and version, commit, feature view, model and
 *     version, training dataset, prediction run), read from its input, is added to each
 *     of its log lines beside the SDK's own attributes (workflowId, workflowRunId,
 *     activityType, attempt, …);
 *   - its wall time goes into the stage histogram, by activity type and outcome;
 *   - the row counts its result carries (feature partitions and commits, prediction
 *     partitions) go into the row counters;
 *   - one `activity completed` line at info, with its duration and the numbers of its
 *     result (results carry references and counts, never data).
 *
 * So the activity files stay as they are: the counts are already in what they return.
 */
import type { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import type { Counter } from 'prom-client';
import type { FeaturePipelineResult, PartitionResult as FeaturePartitionResult } from '../activities/feature.ts';
import type { PartitionResult as PredictionPartitionResult } from '../activities/inference.ts';
import { workerMetrics, workingOn, workingOnOf, type WorkerMetrics, type WorkingOn } from '../activities/observability.ts';
import { FailureType } from '../core/errors.ts';

type Outcome = 'ok' | 'failed' | 'cancelled';

/** The interceptor factory for `WorkerOptions.interceptors.activity`. */
export function activityObserver(metrics: WorkerMetrics = workerMetrics): ActivityInterceptorsFactory {
  return (context) => ({
    inbound: {
      async execute(input, next) {
        workingOn(versionsOf(input.args[0]), context);
        const started = process.hrtime.bigint();
        const type = context.info.activityType;
        const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
        let result: unknown;
        try {
          result = await next(input);
        } catch (err) {
          const outcome: Outcome = err instanceof CancelledFailure || context.cancellationSignal.aborted ? 'cancelled' : 'failed';
          safely(context, () => {
            metrics.activityDuration.observe({ activity: type, outcome }, seconds());
            countFailure(metrics, type, context, err);
          });
          throw err;
        }
        const elapsed = seconds();
        safely(context, () => {
          metrics.activityDuration.observe({ activity: type, outcome: 'ok' }, elapsed);
          countResult(metrics, type, context, result);
        });
        context.log.info('activity completed', { durationMs: Math.round(elapsed * 1000), ...summaryOf(result) });
        return result;
      },
    },
    outbound: {
      // Called on every log call: what the activity declared since it started is included. The task
      // token goes: a long secret-ish string on every line, and the activity id already names the task.
      getLogAttributes: (attrs, next) => {
        const { taskToken: _taskToken, ...rest } = attrs;
        return next({ ...rest, ...workingOnOf(context) });
      },
    },
  });
}

/** The versions and ids named by an activity's input (its first and only argument). */
export function versionsOf(input: unknown): WorkingOn {
  if (!isRecord(input)) return {};
  const out: WorkingOn = {};
  const version = typeof input.version === 'number' ? input.version : undefined;
  // `version` belongs to whichever of these the input names first.
  if (typeof input.featureGroup === 'string') {
    out.featureGroup = input.featureGroup;
    if (version !== undefined) out.featureGroupVersion = version;
  } else if (typeof input.featureView === 'string') {
    out.featureView = input.featureView;
    if (version !== undefined) out.featureViewVersion = version;
  } else if (typeof input.model === 'string' && version !== undefined) {
    out.modelVersion = version;
  }
  if (typeof input.model === 'string') out.model = input.model;
  if (typeof input.ref === 'number') out.modelVersion = input.ref;
  else if (typeof input.ref === 'string') out.modelRef = input.ref;
  if (typeof input.alias === 'string') out.modelRef = input.alias;
  if (typeof input.commitId === 'number') out.commitId = input.commitId;
  if (typeof input.trainingDatasetId === 'number') out.trainingDatasetId = input.trainingDatasetId;
  // Batch inference names its prediction run `runId` (not the workflow's run id, which the SDK logs as workflowRunId).
  if (typeof input.runId === 'string') out.predictionRun = input.runId;
  if (typeof input.partition === 'number') out.partition = input.partition;
  else if (isRecord(input.partition) && typeof input.partition.index === 'number') out.partition = input.partition.index;
  return out;
}

function countResult(metrics: WorkerMetrics, type: string, context: Context, result: unknown): void {
  const on = workingOnOf(context);
  const group = { feature_group: String(on.featureGroup ?? ''), version: String(on.featureGroupVersion ?? '') };
  switch (type) {
    case 'ingestPartition':
    case 'aggregatePartition': {
      const partition = result as Partial<FeaturePartitionResult>;
      add(metrics.featureRowsRead, group, partition.rowsIn);
      return;
    }
    case 'commitFeatures': {
      const commit = result as Partial<FeaturePipelineResult>;
      add(metrics.featureRowsCommitted, group, commit.rowsCommitted);
      add(metrics.featureRowsRejected, group, commit.rowsRejected);
      return;
    }
    case 'predictPartition': {
      const partition = result as Partial<PredictionPartitionResult>;
      // A partition an earlier attempt had written wrote nothing now.
      if (partition.skipped !== false) return;
      const model = { model: String(on.model ?? '') };
      add(metrics.predictionsWritten, model, partition.rows);
      add(metrics.predictionRowsRejected, model, partition.rowsRejected);
      return;
    }
  }
}

/** Counting never fails the activity it counts: a surprise is logged and the activity's outcome stands. */
function safely(context: Context, count: () => void): void {
  try {
    count();
  } catch (err) {
    context.log.warn('could not count the activity in the worker metrics', { error: err });
  }
}

/** Adds a count from a result: only a finite, non-negative number (prom-client refuses negative increments). */
function add<L extends string>(counter: Counter<L>, labels: Partial<Record<L, string>>, value: unknown): void {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) counter.inc(labels, value);
}

/** A commit refused by validation still rejected its rows: its failure's details count them. */
function countFailure(metrics: WorkerMetrics, type: string, context: Context, err: unknown): void {
  if (type !== 'commitFeatures' || !(err instanceof ApplicationFailure) || err.type !== FailureType.ValidationFailed) return;
  const details = err.details?.[0];
  if (!isRecord(details)) return;
  const on = workingOnOf(context);
  add(metrics.featureRowsRejected, { feature_group: String(on.featureGroup ?? ''), version: String(on.featureGroupVersion ?? '') }, details.rowsRejected);
}

/** The top-level numbers and flags of a result (counts, versions, ids), for the completion line. */
function summaryOf(result: unknown): Record<string, unknown> {
  if (!isRecord(result)) return {};
  const numbers = Object.entries(result).filter(([, v]) => (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean');
  return numbers.length ? { result: Object.fromEntries(numbers.slice(0, 20)) } : {};
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
