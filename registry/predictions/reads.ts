/**
 * What batch inference reads: the feature view's point-in-time join over a
 * partition's spine rows (the same SQL training datasets are made with, label
 * left out), as of the commits pinned on the run; and the predictions it wrote.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { columnsFromRows, type ColumnArrays, type ColumnBatch } from '../../core/columns.ts';
import { PREDICT_CHUNK } from '../../ml/predict.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import { col, raw, sql, streamQuery, toNative } from '../db/index.ts';
import { pointInTimeBatches, pointInTimeColumns, pointInTimeSql, snapshotSql, viewQuery, type PitPlan, type PitQuery, type PitStrategy, type ViewSnapshot } from '../feature-store/index.ts';

/**
 * [start, end) cut into buckets of `widthMs` whole milliseconds each, from `start` (the
 * last one ends at `end`, so it is shorter where the span is not a multiple of the width).
 */
export interface TimeBuckets {
  start: Date;
  end: Date;
  widthMs: number;
}

/** The buckets' edges: one more than there are buckets, the first `start`, the last `end`. */
export function bucketBoundaries({ start, end, widthMs }: TimeBuckets): Date[] {
  const boundaries: Date[] = [];
  for (let t = start.getTime(); t < end.getTime(); t += widthMs) boundaries.push(new Date(t));
  boundaries.push(end);
  return boundaries;
}

/**
 * Spine rows in each bucket, in one scan of the event times alone. Each row's bucket is
 * `date_bin` of its event time: whole microseconds divided, exact, and faster per row
 * than a search of an array of edges (width_bucket compares timestamps through a
 * function call each).
 */
export async function countSpineRowsByBucket(knex: Knex, view: FeatureViewDefinition, snapshot: ViewSnapshot, buckets: TimeBuckets): Promise<number[]> {
  const { start, end, widthMs } = buckets;
  if (!(end > start) || !Number.isSafeInteger(widthMs) || widthMs < 1) throw new FtiError(FailureType.InvalidInput, 'spine buckets need a window that is not empty and a whole number of milliseconds per bucket');
  const q = viewQuery(view, snapshot, { withLabel: false, strategy: 'lateral' });
  const et = col('s', q.spine.shape.eventTime);
  const result = (await raw(
    knex,
    sql`select (extract(epoch from b) * 1000)::bigint as b, n from (
          select date_bin(${`${widthMs} milliseconds`}::interval, ${et}, ${start}::timestamptz) as b, count(*)::bigint as n
          from (${snapshotSql(q.spine.shape, q.spine.visible, [q.spine.shape.eventTime])}) s
          where ${et} >= ${start} and ${et} < ${end}
          group by 1) binned`,
  )) as { rows: Array<{ b: number; n: number }> };
  const counts = new Array<number>(bucketBoundaries(buckets).length - 1).fill(0);
  for (const r of result.rows) {
    const at = (r.b - start.getTime()) / widthMs;
    if (!Number.isInteger(at) || at < 0 || at >= counts.length) throw new Error(`spine bucket ${r.b} is not one of the ${counts.length} from ${start.toISOString()}`);
    counts[at] = r.n;
  }
  return counts;
}

/** The PIT query of a view for spine rows in [start, end), without the label. */
export function partitionQuery(view: FeatureViewDefinition, snapshot: ViewSnapshot, options: { start: Date; end: Date; strategy: PitStrategy }): PitQuery {
  return viewQuery(view, snapshot, { start: options.start, end: options.end, withLabel: false, strategy: options.strategy });
}

/** A partition's read: its window, plan and batch size; `arrays`: where the stream plan's number columns come from (ColumnArrays). */
export interface FeatureBatchOptions {
  start: Date;
  end: Date;
  strategy: PitPlan;
  batchSize?: number;
  signal?: AbortSignal;
  arrays?: ColumnArrays;
}

/**
 * Rows of the join in batches held as columns (core/columns.ts): spine keys, event
 * time (microseconds since 1970) and every view feature under its view name (the
 * columns a training dataset has). The stream plan holds the window's spine and decodes
 * its rows straight into typed columns; the SQL plans stream through a cursor, their
 * row objects wrapped as columns.
 */
export async function* streamViewBatches(
  knex: Knex,
  view: FeatureViewDefinition,
  snapshot: ViewSnapshot,
  options: FeatureBatchOptions,
): AsyncGenerator<ColumnBatch> {
  const batchSize = options.batchSize ?? PREDICT_CHUNK;
  if (options.strategy === 'stream') {
    yield* pointInTimeBatches(knex, partitionQuery(view, snapshot, { ...options, strategy: 'window' }), { batchSize, signal: options.signal, arrays: options.arrays });
    return;
  }
  const q = partitionQuery(view, snapshot, { ...options, strategy: options.strategy });
  const names = pointInTimeColumns(q).map((c) => c.name);
  const native = toNative(knex, pointInTimeSql(q));
  // Timestamps come as microseconds since 1970, as the stream plan gives them: views
  // have no timestamp features, and the event time only travels on to the predictions' binary COPY, exact.
  for await (const rows of streamQuery<Record<string, unknown>>(knex, native.sql, native.bindings, batchSize, { timestampsAsMicros: true, signal: options.signal })) yield columnsFromRows(rows, names);
}

/** One stored prediction of a run. */
export interface StoredPrediction {
  runId: string;
  model: string;
  version: number;
  entityKey: Record<string, unknown>;
  eventTime: Date;
  score: number;
}

interface PredictionRow {
  run_id: string;
  model: string;
  model_version: number;
  entity_key: Record<string, unknown>;
  event_time: Date;
  score: number;
}

/** A run's predictions in a stable order (event time, then entity), optionally within [start, end). */
export async function listPredictions(knex: Knex, runId: string, { limit = 1_000_000, start, end }: { limit?: number; start?: Date; end?: Date } = {}): Promise<StoredPrediction[]> {
  const query = knex<PredictionRow>('predictions').where({ run_id: runId });
  if (start) void query.andWhere('event_time', '>=', start);
  if (end) void query.andWhere('event_time', '<', end);
  const rows = await query.orderBy('event_time').orderByRaw('entity_key::text').limit(limit);
  return rows.map((r) => ({ runId: r.run_id, model: r.model, version: r.model_version, entityKey: r.entity_key, eventTime: r.event_time, score: r.score }));
}

/** Rows and distinct entities of a run per model version (a pinned run has exactly one). */
export async function countPredictions(knex: Knex, runId: string): Promise<Array<{ version: number; rows: number; entities: number }>> {
  const result = (await knex.raw(
    `select model_version as version, count(*)::bigint as rows, count(distinct entity_key)::bigint as entities
     from predictions where run_id = ? group by model_version order by model_version`,
    [runId],
  )) as { rows: Array<{ version: number; rows: number; entities: number }> };
  return result.rows.map((r) => ({ version: Number(r.version), rows: Number(r.rows), entities: Number(r.entities) }));
}

/** A spine row whose features failed the model signature: never scored, kept with its reasons. */
export interface StoredReject {
  runId: string;
  entityKey: Record<string, unknown>;
  eventTime: Date;
  reasons: string[];
  features: Record<string, unknown>;
}

export async function listRejects(knex: Knex, runId: string, limit = 1000): Promise<StoredReject[]> {
  const rows = await knex('prediction_rejects').where({ run_id: runId }).orderBy('event_time').orderByRaw('entity_key::text').limit(limit);
  return rows.map((r: { run_id: string; entity_key: Record<string, unknown>; event_time: Date; reasons: string[]; features: Record<string, unknown> }) => ({
    runId: r.run_id,
    entityKey: r.entity_key,
    eventTime: r.event_time,
    reasons: r.reasons,
    features: r.features,
  }));
}
