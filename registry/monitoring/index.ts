/**
 * registry/monitoring: what monitoring found. A drift run compares the features of a
 * window with the training dataset of a model version (drift.ts measures them) and
 * keeps one row per feature; a feature over its threshold is an alert. It never reads
 * models or datasets itself: the caller hands it the dataset's table and the window's
 * SQL (activities/monitoring.ts resolves them).
 *
 * It also keeps the served log (skew_log: what the prediction server served, sampled)
 * and skew runs (skew.ts): the logged vectors of a window against the offline
 * point-in-time vectors the caller hands in as SQL (activities/skew.ts builds them with
 * the feature store). Both kinds are monitoring runs; a skew run's alerts are the
 * features with mismatches.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import type { DriftThresholds, FeatureViewDefinition } from '../../features/views.ts';
import { transaction, type Sql } from '../db/index.ts';
import { measureDrift, type FeatureDrift } from './drift.ts';
import { insertServed, measureSkew, servedEntities, type FeatureSkew, type ServedRow } from './skew.ts';

export type { FeatureDrift } from './drift.ts';
export { measureDrift, populationStability } from './drift.ts';
export type { FeatureSkew, ServedRow } from './skew.ts';
export { RELATIVE_TOLERANCE } from './skew.ts';

export interface SkewRun {
  id: number;
  model: string;
  modelVersion: number;
  featureView: { name: string; version: number };
  windowStart: Date;
  windowEnd: Date;
  /** Logged rows compared. */
  rows: number;
  /** Features with at least one mismatch. */
  alerts: string[];
  features: FeatureSkew[];
  workflowId: string | null;
  createdAt: Date;
}

export interface SkewWindow {
  model: string;
  modelVersion: number;
  start: Date;
  end: Date;
}

export interface NewSkewRun {
  window: SkewWindow;
  view: FeatureViewDefinition;
  /** The offline rows of the window's logged rows: `_id` (the log row) and the view's features. */
  offline: Sql;
  /** A retry with the same key returns the run already recorded. */
  idempotencyKey?: string;
  workflowId?: string;
}

interface SkewRow {
  monitoring_run_id: string;
  feature: string;
  kind: FeatureSkew['kind'];
  rows: number;
  mismatches: number;
  mismatch_share: number;
  max_abs_diff: number | null;
  null_mismatches: number;
}

export interface DriftRun {
  id: number;
  model: string;
  modelVersion: number;
  trainingDatasetId: number;
  featureView: { name: string; version: number };
  windowStart: Date;
  windowEnd: Date;
  trainRows: number;
  windowRows: number;
  /** Features over a threshold. */
  alerts: string[];
  features: FeatureDrift[];
  workflowId: string | null;
  createdAt: Date;
}

export interface NewDriftRun {
  model: string;
  modelVersion: number;
  view: FeatureViewDefinition;
  trainingDataset: { id: number; tableName: string; trainRows: number };
  window: { start: Date; end: Date; rows: Sql };
  thresholds: DriftThresholds;
  /** A retry with the same key returns the run already recorded. */
  idempotencyKey?: string;
  workflowId?: string;
}

interface RunRow {
  id: string;
  kind: 'drift' | 'skew';
  model: string;
  model_version: number;
  training_dataset_id: string | null;
  feature_view: string;
  feature_view_version: number;
  window_start: Date;
  window_end: Date;
  train_rows: string | null;
  window_rows: string;
  alerts: number;
  workflow_id: string | null;
  idempotency_key: string | null;
  created_at: Date;
}

interface DriftRow {
  monitoring_run_id: string;
  feature: string;
  kind: FeatureDrift['kind'];
  psi: number;
  ks: number | null;
  psi_threshold: number;
  ks_threshold: number | null;
  alert: boolean;
  train_count: string;
  window_count: string;
  train_null_share: number;
  window_null_share: number;
}

export class MonitoringStore {
  private readonly knex: Knex;

  constructor({ knex }: { knex: Knex }) {
    this.knex = knex;
  }

  /** Measures and records a drift run in one transaction (nothing is kept if it fails). */
  async recordDrift(run: NewDriftRun): Promise<DriftRun> {
    if (run.idempotencyKey) {
      const existing = await this.knex<RunRow>('monitoring_runs').where({ idempotency_key: run.idempotencyKey }).first();
      if (existing) return this.driftRun(Number(existing.id));
    }
    const id = await transaction(this.knex, async (trx) => {
      await trx.raw(`select set_config('work_mem', '256MB', true)`);
      const measured = await measureDrift(trx, { view: run.view, datasetTable: run.trainingDataset.tableName, trainRows: run.trainingDataset.trainRows, window: run.window.rows, thresholds: run.thresholds });
      const [row] = await trx<RunRow>('monitoring_runs')
        .insert({
          model: run.model,
          model_version: run.modelVersion,
          training_dataset_id: String(run.trainingDataset.id),
          feature_view: run.view.name,
          feature_view_version: run.view.version,
          window_start: run.window.start,
          window_end: run.window.end,
          train_rows: String(measured.trainRows),
          window_rows: String(measured.windowRows),
          alerts: measured.features.filter((f) => f.alert).length,
          workflow_id: run.workflowId ?? null,
          ...(run.idempotencyKey ? { idempotency_key: run.idempotencyKey } : {}),
        } as Partial<RunRow>)
        .returning('*');
      if (!row) throw new Error('insert into monitoring_runs returned no row');
      await trx('feature_drift').insert(
        measured.features.map((f) => ({
          monitoring_run_id: row.id,
          feature: f.feature,
          kind: f.kind,
          psi: f.psi,
          ks: f.ks,
          psi_threshold: f.psiThreshold,
          ks_threshold: f.ksThreshold,
          alert: f.alert,
          train_count: f.trainCount,
          window_count: f.windowCount,
          train_null_share: f.trainNullShare,
          window_null_share: f.windowNullShare,
        })),
      );
      return Number(row.id);
    });
    return this.driftRun(id);
  }

  async driftRun(id: number): Promise<DriftRun> {
    const row = await this.knex<RunRow>('monitoring_runs').where({ id: String(id), kind: 'drift' }).first();
    if (!row) throw new FtiError(FailureType.NotFound, `drift run ${id} does not exist`);
    const features = (await this.knex<DriftRow>('feature_drift').where({ monitoring_run_id: String(id) }).orderBy('feature')) as DriftRow[];
    return toDriftRun(row, features);
  }

  /** The latest runs (of one model when given), newest first. */
  async driftRuns(options: { model?: string; limit?: number } = {}): Promise<DriftRun[]> {
    const query = this.knex<RunRow>('monitoring_runs').where({ kind: 'drift' }).orderBy('id', 'desc').limit(options.limit ?? 20);
    if (options.model) void query.where({ model: options.model });
    const runs = (await query) as RunRow[];
    // Every run's features in one query.
    const features = (await this.knex<DriftRow>('feature_drift')
      .whereIn('monitoring_run_id', runs.map((r) => r.id))
      .orderBy(['monitoring_run_id', 'feature'])) as DriftRow[];
    return runs.map((r) => toDriftRun(r, features.filter((f) => String(f.monitoring_run_id) === String(r.id))));
  }

  /** What the prediction server served (sampled), in one multi-row INSERT. */
  logServed(rows: readonly ServedRow[]): Promise<void> {
    return insertServed(this.knex, rows);
  }

  /** The logged rows of a model version in [start, end): `_id`, `_keys`, `_at` (the feature store's entityRows takes them). */
  servedEntities(window: SkewWindow): Sql {
    return servedEntities(window);
  }

  /** Compares and records a skew run in one transaction (nothing is kept if it fails). */
  async recordSkew(run: NewSkewRun): Promise<SkewRun> {
    if (run.idempotencyKey) {
      const existing = await this.knex<RunRow>('monitoring_runs').where({ idempotency_key: run.idempotencyKey }).first();
      if (existing) return this.skewRun(Number(existing.id));
    }
    const id = await transaction(this.knex, async (trx) => {
      const measured = await measureSkew(trx, { view: run.view, window: run.window, offline: run.offline });
      const [row] = await trx<RunRow>('monitoring_runs')
        .insert({
          kind: 'skew',
          model: run.window.model,
          model_version: run.window.modelVersion,
          training_dataset_id: null,
          feature_view: run.view.name,
          feature_view_version: run.view.version,
          window_start: run.window.start,
          window_end: run.window.end,
          train_rows: null,
          window_rows: String(measured.rows),
          alerts: measured.features.filter((f) => f.mismatches > 0).length,
          workflow_id: run.workflowId ?? null,
          ...(run.idempotencyKey ? { idempotency_key: run.idempotencyKey } : {}),
        } as Partial<RunRow>)
        .returning('*');
      if (!row) throw new Error('insert into monitoring_runs returned no row');
      await trx('feature_skew').insert(
        measured.features.map((f, position) => ({
          monitoring_run_id: row.id,
          feature: f.feature,
          position,
          kind: f.kind,
          rows: f.rows,
          mismatches: f.mismatches,
          mismatch_share: f.mismatchShare,
          max_abs_diff: f.maxAbsDiff,
          null_mismatches: f.nullMismatches,
        })),
      );
      return Number(row.id);
    });
    return this.skewRun(id);
  }

  async skewRun(id: number): Promise<SkewRun> {
    const row = await this.knex<RunRow>('monitoring_runs').where({ id: String(id), kind: 'skew' }).first();
    if (!row) throw new FtiError(FailureType.NotFound, `skew run ${id} does not exist`);
    const features = (await this.knex<SkewRow>('feature_skew').where({ monitoring_run_id: String(id) }).orderBy('position')) as SkewRow[];
    return toSkewRun(row, features);
  }
}

function toSkewRun(row: RunRow, features: SkewRow[]): SkewRun {
  const skew = features.map(
    (f): FeatureSkew => ({
      feature: f.feature,
      kind: f.kind,
      rows: Number(f.rows),
      mismatches: Number(f.mismatches),
      mismatchShare: f.mismatch_share,
      maxAbsDiff: f.max_abs_diff,
      nullMismatches: Number(f.null_mismatches),
    }),
  );
  return {
    id: Number(row.id),
    model: row.model,
    modelVersion: row.model_version,
    featureView: { name: row.feature_view, version: row.feature_view_version },
    windowStart: row.window_start,
    windowEnd: row.window_end,
    rows: Number(row.window_rows),
    alerts: skew.filter((f) => f.mismatches > 0).map((f) => f.feature),
    features: skew,
    workflowId: row.workflow_id,
    createdAt: row.created_at,
  };
}

function toDriftRun(row: RunRow, features: DriftRow[]): DriftRun {
  const drift = features.map(
    (f): FeatureDrift => ({
      feature: f.feature,
      kind: f.kind,
      psi: f.psi,
      ks: f.ks,
      psiThreshold: f.psi_threshold,
      ksThreshold: f.ks_threshold,
      alert: f.alert,
      trainCount: Number(f.train_count),
      windowCount: Number(f.window_count),
      trainNullShare: f.train_null_share,
      windowNullShare: f.window_null_share,
    }),
  );
  return {
    id: Number(row.id),
    model: row.model,
    modelVersion: row.model_version,
    trainingDatasetId: Number(row.training_dataset_id),
    featureView: { name: row.feature_view, version: row.feature_view_version },
    windowStart: row.window_start,
    windowEnd: row.window_end,
    trainRows: Number(row.train_rows),
    windowRows: Number(row.window_rows),
    alerts: drift.filter((f) => f.alert).map((f) => f.feature),
    features: drift,
    workflowId: row.workflow_id,
    createdAt: row.created_at,
  };
}
