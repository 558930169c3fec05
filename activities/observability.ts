/**
 * What activities report about themselves to their worker's metrics and logs. One
 * process-wide Prometheus registry of our own (the Temporal SDK keeps its metrics
 * apart; workers/metrics-server.ts serves both from one /metrics), and the "working on"
 * attributes of the running activity: the versions it reads or writes, added to its
 * log lines and used as metric labels.
 *
 * Most series are filled at activity boundaries by the worker's interceptor
 * (workers/activity-observer.ts) from what an activity is given and returns; an activity
 * calls in here only where a count is known nowhere else (an epoch's time, a prediction
 * run's model). Safe without any endpoint: the registry is only counted into, and is
 * read only when a worker serves /metrics (tests run activities in-process).
 */
import { Context } from '@temporalio/activity';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface WorkerMetrics {
  registry: Registry;
  /** Source rows read by feature partitions (ingest or aggregate), by feature group. */
  featureRowsRead: Counter<'feature_group' | 'version'>;
  /** Rows made visible by feature commits. */
  featureRowsCommitted: Counter<'feature_group' | 'version'>;
  /** Rows rejected by commits (type errors and failed expectations), refused commits included. */
  featureRowsRejected: Counter<'feature_group' | 'version'>;
  /** Wall time of each activity execution (a pipeline stage), by activity type and outcome (ok, failed, cancelled). */
  activityDuration: Histogram<'activity' | 'outcome'>;
  /** Wall time of each training epoch (boosting: each checkpointed round), by model. */
  trainingEpochSeconds: Histogram<'model'>;
  /** Training throughput of the last epoch, by model. */
  trainingSamplesPerSecond: Gauge<'model'>;
  /** Predictions written by batch inference partitions, by model. */
  predictionsWritten: Counter<'model'>;
  /** Rows batch inference could not score (they failed the model signature), by model. */
  predictionRowsRejected: Counter<'model'>;
}

/** Stage buckets: a quick metadata activity (10 ms) up to an hour-long ingest or training. */
const STAGE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const EPOCH_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

export function createWorkerMetrics(): WorkerMetrics {
  const registry = new Registry();
  const registers = [registry];
  const byGroup = ['feature_group', 'version'] as const;
  return {
    registry,
    featureRowsRead: new Counter({ name: 'fti_feature_rows_read_total', help: 'Source rows read by feature pipeline partitions, by feature group', labelNames: byGroup, registers }),
    featureRowsCommitted: new Counter({ name: 'fti_feature_rows_committed_total', help: 'Rows made visible by feature commits, by feature group', labelNames: byGroup, registers }),
    featureRowsRejected: new Counter({ name: 'fti_feature_rows_rejected_total', help: 'Rows rejected by feature commits (type errors, failed expectations; refused commits included), by feature group', labelNames: byGroup, registers }),
    activityDuration: new Histogram({ name: 'fti_activity_duration_seconds', help: 'Wall time of each activity execution (a pipeline stage), by activity type and outcome', labelNames: ['activity', 'outcome'], buckets: STAGE_BUCKETS, registers }),
    trainingEpochSeconds: new Histogram({ name: 'fti_training_epoch_seconds', help: 'Wall time of each training epoch (boosting: each checkpointed round), by model', labelNames: ['model'], buckets: EPOCH_BUCKETS, registers }),
    trainingSamplesPerSecond: new Gauge({ name: 'fti_training_samples_per_second', help: 'Training samples per second of the last epoch, by model', labelNames: ['model'], registers }),
    predictionsWritten: new Counter({ name: 'fti_batch_predictions_written_total', help: 'Predictions written by batch inference partitions, by model', labelNames: ['model'], registers }),
    predictionRowsRejected: new Counter({ name: 'fti_batch_prediction_rows_rejected_total', help: 'Rows batch inference could not score (they failed the model signature), by model', labelNames: ['model'], registers }),
  };
}

/** The metrics of this process: every worker (and in-process test worker) counts into it. */
export const workerMetrics: WorkerMetrics = createWorkerMetrics();

/** The versions and ids an activity works on, as log attributes and metric labels. */
export type WorkingOn = Record<string, string | number>;

const workingOnByActivity = new WeakMap<Context, WorkingOn>();

/** Adds to what the running activity (or `context`'s) works on: its later log lines carry it; a no-op outside an activity. */
export function workingOn(attrs: WorkingOn, context: Context | undefined = currentContext()): void {
  if (context) workingOnByActivity.set(context, { ...workingOnByActivity.get(context), ...attrs });
}

/** What the activity of `context` works on so far. */
export function workingOnOf(context: Context): WorkingOn {
  return workingOnByActivity.get(context) ?? {};
}

/** One finished training epoch of the running activity's model (named by its input's `model`, else "unknown"). */
export function observeEpoch(epoch: { seconds: number; samplesPerSecond: number }, metrics: WorkerMetrics = workerMetrics): void {
  const context = currentContext();
  const model = String((context && workingOnOf(context).model) ?? 'unknown');
  if (Number.isFinite(epoch.seconds)) metrics.trainingEpochSeconds.observe({ model }, epoch.seconds);
  if (Number.isFinite(epoch.samplesPerSecond)) metrics.trainingSamplesPerSecond.set({ model }, epoch.samplesPerSecond);
}

function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}
