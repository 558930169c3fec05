/**
 * Training/serving skew (registry/monitoring/skew.ts says what is compared): the
 * vectors the prediction server logged for a model version in a window against the
 * offline point-in-time vectors of the same (entity, request time), recomputed by the
 * feature store (entityRows: the join training datasets and batch inference use) in
 * the snapshot current now. `checkSkew` is shared by the `checkSkew` activity (the
 * skewCheck workflow) and `fti monitor skew`.
 */
import { Context } from '@temporalio/activity';
import { FailureType, FtiError } from '../core/errors.ts';
import type { FeatureStore } from '../registry/feature-store/index.ts';
import type { ModelRegistry } from '../registry/models/index.ts';
import type { MonitoringStore, SkewRun } from '../registry/monitoring/index.ts';
import { withDomainFailures } from './failures.ts';
import { heartbeatWhile } from './heartbeat.ts';
import { withIsoTimes, type IsoTimes, type ModelWindowInput } from './monitoring.ts';

export type SkewInput = ModelWindowInput;
export type SkewReport = IsoTimes<SkewRun>;

export interface SkewDeps {
  features: FeatureStore;
  registry: ModelRegistry;
  monitoring: MonitoringStore;
}

export async function checkSkew(deps: SkewDeps, input: SkewInput): Promise<SkewReport> {
  const version = await deps.registry.resolveModelVersion(input.model, input.ref ?? 'champion');
  const viewRef = version.lineage.featureView;
  if (!viewRef) throw new FtiError(FailureType.InvalidInput, `${input.model} v${version.version} names no feature view in its lineage: it cannot have been served`);
  const view = (await deps.features.view(viewRef.name, viewRef.version)).definition;
  const window = { model: version.model, modelVersion: version.version, start: new Date(input.start), end: new Date(input.end) };
  if (!(window.start < window.end)) throw new FtiError(FailureType.InvalidInput, `the window's start (${input.start}) must be before its end (${input.end})`);
  const snapshot = await deps.features.latestSnapshot(view);
  const offline = await deps.features.entityRows(view, snapshot, { entities: deps.monitoring.servedEntities(window) }).toSql();
  const run = await deps.monitoring.recordSkew({ window, view, offline, idempotencyKey: input.idempotencyKey, workflowId: input.workflowId });
  return withIsoTimes(run);
}

export function createSkewActivities(deps: SkewDeps) {
  return withDomainFailures({
    /** Idempotent per workflow run: a retry returns the run its first attempt recorded. */
    async checkSkew(input: SkewInput): Promise<SkewReport> {
      const context = Context.current();
      const report = await heartbeatWhile(() => ({ stage: 'skew', model: input.model }), checkSkew(deps, input));
      context.log.info('skew', { model: report.model, version: report.modelVersion, rows: report.rows, mismatched: report.alerts });
      return report;
    },
  });
}
