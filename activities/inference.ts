/**
 * Batch inference activities (CPU pool). The plan resolves the model reference once
 * and pins that version and the feature commits on the prediction run; every
 * partition then reads the pinned snapshot point-in-time, checks each row against
 * the model signature (rows that fail are counted and recorded, never scored on
 * nulls or silently dropped), scores and COPYs its predictions in one transaction.
 * A retry or a re-run of the same run id never duplicates a prediction.
 */
import { performance } from 'node:perf_hooks';
import { activityInfo, Context } from '@temporalio/activity';
import type { ColumnBatch } from '../core/columns.ts';
import { FailureType, FtiError } from '../core/errors.ts';
import { DEFAULT_ALIAS, MAX_PARTITIONS } from '../core/inference-inputs.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import { loadBackend, type LoadedBackend, type Tf } from '../ml/backend.ts';
import { readAhead } from '../core/streams.ts';
import { LeaseCache } from '../ml/lease-cache.ts';
import { assertSignatureFitsView, loadScoringModel, type ScoringModel, type ScoringReject } from '../ml/scoring.ts';
import type { FeatureStore, PitPlan } from '../registry/feature-store/index.ts';
import type { ModelRegistry } from '../registry/models/index.ts';
import { bucketBoundaries, type PredictionRun, type PredictionStore, type ScoredBatch, type TimeBuckets } from '../registry/predictions/index.ts';
import { withDomainFailures } from './failures.ts';
import type { FeatureReaders } from './feature-reader.ts';
import { heartbeatWhile } from './heartbeat.ts';
import { workingOn } from './observability.ts';

/**
 * Up to this many spine rows per partition the join probes the feature tables by
 * index, row by row (LATERAL: ~12 µs a row on the flights); above it, the set-based
 * plan, whose cost follows the joined groups' rows in the partition's window (and,
 * before it, each key's newest row, by index: point-in-time.ts, "settled").
 */
export const LATERAL_MAX_ROWS = 50_000;
/**
 * Up to this many spine rows per partition (and above LATERAL_MAX_ROWS) the join
 * runs by the stream plan (pit-stream.ts): the partition's spine and the joined
 * groups' rows of its window are read once, unsorted, and joined in Node, about twice
 * as fast as the window plan's sort of both together (a third of June: 1.6 s against
 * 3.5 s). It holds the partition's spine in memory (about 300 bytes a row with the
 * flights' features), so a bigger partition (one asked for by `partitions`) falls
 * back to the window plan, whose memory is Postgres'.
 */
export const STREAM_MAX_ROWS = 1_000_000;
/**
 * Spine rows per partition when the caller names no partition count. The set-based
 * join of a partition reads the joined groups' rows of its window plus how long they
 * take to become known (a late commit widens that), so small partitions repeat that
 * margin; a few large ones keep every worker busy.
 */
export const PARTITION_ROWS = 250_000;
/** Resolution at which the spine is counted to place partition boundaries. */
const COUNT_BUCKETS = 1_024;
/** Rejected rows kept (with reasons and features) per partition; all of them are counted. */
export const KEPT_REJECTS = 1_000;

export interface PlanBatchInferenceInput {
  runId: string;
  model: string;
  alias?: string;
  version?: number;
  start: string;
  end: string;
  partitions?: number;
}

export interface PartitionRef {
  index: number;
  start: string;
  end: string;
  spineRows: number;
}

export interface BatchInferenceResult {
  runId: string;
  model: string;
  version: number;
  rows: number;
  rowsRejected: number;
  featureView: { name: string; version: number };
  /** The partitions scored by this execution, their seconds summed by stage (absent when it scored none). */
  stageSeconds?: PartitionSeconds;
}

export type BatchInferencePlan =
  | { kind: 'done'; result: BatchInferenceResult }
  | { kind: 'score'; runId: string; model: string; version: number; featureView: { name: string; version: number }; strategy: PitPlan; partitions: PartitionRef[] };

export interface PartitionResult {
  partition: number;
  rows: number;
  rowsRejected: number;
  /** True when an earlier attempt (or an earlier run of the id) had already written it. */
  skipped: boolean;
  /** Where its time went (absent when skipped); see PartitionSeconds. */
  seconds?: PartitionSeconds;
}

/**
 * Seconds of one partition's scoring by stage: `read` waiting for feature rows (the
 * point-in-time join), `score` checking, encoding and the forward pass, `write` the
 * rest (the predictions' COPY and the commit). Summed over a run's partitions, which
 * overlap, they are busy time, not wall time.
 */
export interface PartitionSeconds {
  read: number;
  score: number;
  write: number;
}

export interface InferenceActivityDeps {
  features: FeatureStore;
  predictions: PredictionStore;
  registry: ModelRegistry;
  /** The worker's TensorFlow.js backend; null: load this process's CPU backend on first use. */
  backend: LoadedBackend | null;
  /** Model versions kept loaded in this worker. */
  modelCapacity?: number;
  /** Where the plans change (spine rows of the largest partition): LATERAL_MAX_ROWS and STREAM_MAX_ROWS unless given. */
  plans?: { lateralMaxRows?: number; streamMaxRows?: number };
  /** Threads partitions' features are read on (feature-reader.ts); none: the activity's own thread. */
  featureReaders?: FeatureReaders;
}

export function createInferenceActivities({ features, predictions: store, registry, backend, modelCapacity = 4, plans = {}, featureReaders }: InferenceActivityDeps) {
  const tf = async (): Promise<Tf> => (backend ?? (await loadBackend('cpu'))).tf;
  // One load per model version per worker, shared by its concurrent partitions.
  const models = new LeaseCache<ScoringModel>(async (key) => {
    const { name, version } = parseModelKey(key);
    return loadScoringModel({ models: registry, views: features, tf: await tf() }, name, version);
  }, modelCapacity);

  return withDomainFailures({
    /** Resolves the model once, pins version and commits on the run, and splits the window. */
    async planBatchInference(input: PlanBatchInferenceInput): Promise<BatchInferencePlan> {
      // The partitions' reads are about to come: their threads load while the run is planned.
      featureReaders?.warm();
      const requestedRef = input.version !== undefined ? String(input.version) : (input.alias ?? DEFAULT_ALIAS);
      const start = new Date(input.start);
      const end = new Date(input.end);
      const execution = activityInfo().workflowExecution;
      const workflow = { workflowId: execution?.workflowId, workflowRunId: execution?.runId };

      const existing = await store.findRun(input.runId);
      if (existing) return continueRun(existing, { ...input, requestedRef, start, end }, workflow);

      const record = await registry.resolveModelVersion(input.model, input.version ?? requestedRef);
      const viewRef = record.lineage.featureView;
      if (!viewRef) throw new FtiError(FailureType.InvalidInput, `model ${record.model} v${record.version} records no feature view in its lineage; batch inference needs one`);
      const view = (await features.view(viewRef.name, viewRef.version)).definition;
      assertSignatureFitsView(record, view);
      const snapshot = await features.latestSnapshot(view);
      // One scan counts the spine in fine time buckets; partitions are cut from them
      // with about equal numbers of rows (not equal times: traffic is not uniform).
      const buckets = sliceWindow(start, end, COUNT_BUCKETS);
      const counts = await store.countSpineRows(view, snapshot, buckets);
      const total = counts.reduce((n, c) => n + c, 0);
      const wanted = input.partitions ?? Math.ceil(total / PARTITION_ROWS);
      const partitions = balancePartitions(bucketBoundaries(buckets), counts, wanted);
      const { run, created } = await store.createRun({
        runId: input.runId,
        model: record.model,
        requestedRef,
        version: record.version,
        featureView: viewRef,
        windowStart: start,
        windowEnd: end,
        strategy: planFor(Math.max(...partitions.map((p) => p.spineRows)), plans),
        commits: snapshot.commits,
        ...workflow,
        partitions,
      });
      // A concurrent start of the same run id won the insert: follow its run.
      if (!created) return continueRun(run, { ...input, requestedRef, start, end }, workflow);
      Context.current().log.info('prediction run planned', { runId: run.runId, model: run.model, version: run.version, partitions: partitions.length, spineRows: run.spineRows, strategy: run.strategy });
      return scorePlan(run);
    },

    /** Scores one partition of a run with the pinned version and commits; idempotent. */
    async predictPartition(input: { runId: string; partition: number }): Promise<PartitionResult> {
      const run = await store.run(input.runId);
      // Its log lines and the worker's prediction counts name the model.
      workingOn({ model: run.model, modelVersion: run.version });
      const partition = await store.partition(input.runId, input.partition);
      if (partition.status === 'done') return { partition: partition.index, rows: partition.rows, rowsRejected: partition.rowsRejected, skipped: true };
      const view = (await features.view(run.featureView.name, run.featureView.version)).definition;
      const snapshot = await features.pinnedSnapshot(view, run.commits);
      const lease = await models.acquire(modelKey(run.model, run.version));
      const started = performance.now();
      try {
        const counters = { read: 0, rejected: 0, readMs: 0, scoreMs: 0 };
        const kept: ScoringReject[] = [];
        const context = Context.current();
        const progress = () => ({ stage: 'predict', partition: partition.index, rows: counters.read, total: partition.spineRows });
        // The next batch's FETCH runs while this one is scored.
        const read = { view, snapshot, start: partition.start, end: partition.end, strategy: run.strategy };
        const rows = readAhead(featureReaders ? featureReaders.batches(read, context.cancellationSignal) : store.featureBatches(view, snapshot, { ...read, signal: context.cancellationSignal }));
        const batches = scoreBatches(rows, lease.value, counters, kept, () => context.heartbeat(progress()), context.cancellationSignal);
        const { partition: done, written } = await heartbeatWhile(
          progress,
          store.writePartition({ run, partition, spine: spineOf(view), batches, rejects: () => ({ count: counters.rejected, kept }), signal: context.cancellationSignal }),
        );
        if (done.rowsRejected > 0) context.log.warn('rows failed the model signature', { runId: run.runId, partition: done.index, rejected: done.rowsRejected, first: kept[0]?.reasons });
        const seconds = { read: counters.readMs / 1000, score: counters.scoreMs / 1000, write: (performance.now() - started - counters.readMs - counters.scoreMs) / 1000 };
        return { partition: done.index, rows: done.rows, rowsRejected: done.rowsRejected, skipped: !written, seconds };
      } finally {
        lease.release();
      }
    },

    /** Marks the run completed once every partition is done; returns its totals. */
    async finishBatchInference(input: { runId: string }): Promise<BatchInferenceResult> {
      return resultOf(await store.completeRun(input.runId));
    },

    /** Records why the run gave up; done partitions stay for a re-run of the id to reuse. */
    async abortBatchInference(input: { runId: string; error: string }): Promise<void> {
      await store.failRun(input.runId, input.error);
    },
  });

  async function continueRun(
    run: PredictionRun,
    asked: { model: string; requestedRef: string; start: Date; end: Date },
    workflow: { workflowId?: string; workflowRunId?: string },
  ): Promise<BatchInferencePlan> {
    const same = run.model === asked.model && run.requestedRef === asked.requestedRef && run.windowStart.getTime() === asked.start.getTime() && run.windowEnd.getTime() === asked.end.getTime();
    if (!same) {
      throw new FtiError(
        FailureType.Conflict,
        `prediction run ${run.runId} already exists for ${run.model}@${run.requestedRef} over [${run.windowStart.toISOString()}, ${run.windowEnd.toISOString()}); ` +
          `a re-run must ask for the same, or use another runId`,
        { runId: run.runId },
      );
    }
    if (run.status === 'completed') return { kind: 'done', result: resultOf(run) };
    return scorePlan(await store.resumeRun(run.runId, workflow));
  }

  async function scorePlan(run: PredictionRun): Promise<BatchInferencePlan> {
    const partitions = await store.partitions(run.runId);
    return {
      kind: 'score',
      runId: run.runId,
      model: run.model,
      version: run.version,
      featureView: run.featureView,
      strategy: run.strategy,
      partitions: partitions.map((p) => ({ index: p.index, start: p.start.toISOString(), end: p.end.toISOString(), spineRows: p.spineRows })),
    };
  }
}

/**
 * Reads, checks and scores batch by batch; memory holds one batch at a time. A cancel
 * ends it before the next batch: the partition's write transaction rolls back whole.
 */
async function* scoreBatches(
  source: AsyncIterable<ColumnBatch>,
  model: ScoringModel,
  counters: { read: number; rejected: number; readMs: number; scoreMs: number },
  kept: ScoringReject[],
  onBatch: () => void,
  signal: AbortSignal,
): AsyncGenerator<ScoredBatch> {
  let waited = performance.now();
  for await (const batch of source) {
    const received = performance.now();
    counters.readMs += received - waited;
    signal.throwIfAborted();
    const scored = await model.scoreColumns(batch);
    counters.scoreMs += performance.now() - received;
    counters.read += batch.size;
    counters.rejected += scored.rejected.length;
    for (const r of scored.rejected) if (kept.length < KEPT_REJECTS) kept.push(r);
    onBatch();
    yield { batch, rows: scored.rows, scores: scored.scores };
    waited = performance.now();
  }
}

/** The plan every partition of a run reads by, from its largest partition's spine rows. */
export function planFor(spineRows: number, plans: NonNullable<InferenceActivityDeps['plans']> = {}): PitPlan {
  if (spineRows <= (plans.lateralMaxRows ?? LATERAL_MAX_ROWS)) return 'lateral';
  return spineRows <= (plans.streamMaxRows ?? STREAM_MAX_ROWS) ? 'stream' : 'window';
}

/** [start, end) cut into at most `n` buckets of equal whole milliseconds (the last one takes what is left). */
export function sliceWindow(start: Date, end: Date, n: number): TimeBuckets {
  const span = end.getTime() - start.getTime();
  if (!(span > 0)) throw new FtiError(FailureType.InvalidInput, `the window [${start.toISOString()}, ${end.toISOString()}) is empty`);
  return { start, end, widthMs: Math.ceil(span / Math.max(1, Math.floor(n))) };
}

/**
 * Groups consecutive buckets ([boundaries[i], boundaries[i+1]) holding counts[i]
 * rows) into at most `n` (≤ MAX_PARTITIONS) partitions of about equal row counts.
 * Boundaries stay on bucket edges, so a partition never splits a bucket; the first
 * partition starts at the window's start and the last ends at its end.
 */
export function balancePartitions(boundaries: readonly Date[], counts: readonly number[], n: number): Array<{ start: Date; end: Date; spineRows: number }> {
  const wanted = Math.min(MAX_PARTITIONS, Math.max(1, Math.floor(n)));
  const total = counts.reduce((a, c) => a + c, 0);
  const first = boundaries[0];
  const last = boundaries[boundaries.length - 1];
  if (!first || !last || boundaries.length !== counts.length + 1) throw new Error('balancePartitions: one more boundary than counts expected');
  const partitions: Array<{ start: Date; end: Date; spineRows: number }> = [];
  let start = first;
  let rows = 0;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    rows += counts[i] as number;
    seen += counts[i] as number;
    const end = boundaries[i + 1] as Date;
    // Close the partition once it reaches its share of the rows (the last one takes the rest).
    if (partitions.length < wanted - 1 && end < last && seen >= (total * (partitions.length + 1)) / wanted && rows > 0) {
      partitions.push({ start, end, spineRows: rows });
      start = end;
      rows = 0;
    }
  }
  partitions.push({ start, end: last, spineRows: rows });
  return partitions;
}

function spineOf(view: FeatureViewDefinition): { entityKeys: string[]; eventTime: string } {
  return { entityKeys: view.spine.entityKeys, eventTime: view.spine.eventTime };
}

function resultOf(run: PredictionRun): BatchInferenceResult {
  return { runId: run.runId, model: run.model, version: run.version, rows: run.rows, rowsRejected: run.rowsRejected, featureView: run.featureView };
}

function modelKey(name: string, version: number): string {
  return `${name}@${version}`;
}

function parseModelKey(key: string): { name: string; version: number } {
  const at = key.lastIndexOf('@');
  return { name: key.slice(0, at), version: Number(key.slice(at + 1)) };
}
