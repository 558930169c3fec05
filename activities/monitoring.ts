/**
 * Drift monitoring (registry/monitoring says what is measured): the features of a
 * window against the training dataset of the model version in use. `monitorDrift` is
 * shared by the `monitorDrift` activity (the monitoringPipeline workflow) and
 * `fti monitor drift`.
 */
import { Context } from '@temporalio/activity';
import { FailureType, FtiError } from '../core/errors.ts';
import type { Catalog } from '../features/catalog.ts';
import { DEFAULT_DRIFT_THRESHOLDS, type DriftThresholds, type FeatureViewDefinition } from '../features/views.ts';
import type { FeatureStore } from '../registry/feature-store/index.ts';
import type { ModelRegistry } from '../registry/models/index.ts';
import type { DriftRun, MonitoringStore } from '../registry/monitoring/index.ts';
import type { TrainingStore } from '../registry/training/index.ts';
import { withDomainFailures } from './failures.ts';
import { heartbeatWhile } from './heartbeat.ts';

/** What every monitoring check is asked: a model version (by ref) and a time window. */
export interface ModelWindowInput {
  model: string;
  /** An alias, a version number or 'latest' (default: champion). */
  ref?: string | number;
  /** The window [start, end): the spine rows' event times (drift), the requests' times (skew). */
  start: string;
  end: string;
  idempotencyKey?: string;
  workflowId?: string;
}
export type DriftInput = ModelWindowInput;

/** A monitoring run as a workflow result or JSON prints it: dates as ISO strings. */
export type IsoTimes<R extends { windowStart: Date; windowEnd: Date; createdAt: Date }> = Omit<R, 'windowStart' | 'windowEnd' | 'createdAt'> & {
  windowStart: string;
  windowEnd: string;
  createdAt: string;
};

export function withIsoTimes<R extends { windowStart: Date; windowEnd: Date; createdAt: Date }>(run: R): IsoTimes<R> {
  return { ...run, windowStart: run.windowStart.toISOString(), windowEnd: run.windowEnd.toISOString(), createdAt: run.createdAt.toISOString() };
}

export type DriftReport = IsoTimes<DriftRun>;

export interface MonitoringDeps {
  features: FeatureStore;
  training: TrainingStore;
  registry: ModelRegistry;
  monitoring: MonitoringStore;
  /** The deployment's views: their drift thresholds, when the code defines the view (else the registered definition's). */
  views?: Catalog<FeatureViewDefinition>;
}

export async function monitorDrift(deps: MonitoringDeps, input: DriftInput): Promise<DriftReport> {
  const version = await deps.registry.resolveModelVersion(input.model, input.ref ?? 'champion');
  const datasetId = version.lineage.trainingDatasetId;
  const viewRef = version.lineage.featureView;
  if (datasetId === undefined || !viewRef) {
    throw new FtiError(FailureType.InvalidInput, `${input.model} v${version.version} names no training dataset and feature view in its lineage: there is nothing to compare with`);
  }
  const dataset = await deps.training.dataset(datasetId);
  const view = (await deps.features.view(viewRef.name, viewRef.version)).definition;
  const start = new Date(input.start);
  const end = new Date(input.end);
  const snapshot = await deps.features.latestSnapshot(view);
  const rows = await deps.features.viewRows(view, snapshot, { start, end, withLabel: false }).toSql();
  const run = await deps.monitoring.recordDrift({
    model: version.model,
    modelVersion: version.version,
    view,
    trainingDataset: { id: dataset.id, tableName: dataset.tableName, trainRows: dataset.rowCounts.train },
    window: { start, end, rows },
    thresholds: thresholdsOf(view, deps.views),
    idempotencyKey: input.idempotencyKey,
    workflowId: input.workflowId,
  });
  return withIsoTimes(run);
}

function thresholdsOf(view: FeatureViewDefinition, views: Catalog<FeatureViewDefinition> | undefined): DriftThresholds {
  const defined = views?.list().find((v) => v.name === view.name && v.version === view.version);
  return defined?.drift ?? view.drift ?? DEFAULT_DRIFT_THRESHOLDS;
}

export function createMonitoringActivities(deps: MonitoringDeps) {
  return withDomainFailures({
    /** Idempotent per workflow run: a retry returns the run its first attempt recorded. */
    async monitorDrift(input: DriftInput): Promise<DriftReport> {
      const context = Context.current();
      const report = await heartbeatWhile(() => ({ stage: 'drift', model: input.model }), monitorDrift(deps, input));
      context.log.info('drift', { model: report.model, version: report.modelVersion, alerts: report.alerts, windowRows: report.windowRows });
      return report;
    },
  });
}
