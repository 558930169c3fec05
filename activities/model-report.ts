/**
 * The training pipeline's report step (CPU pool): once a version is registered, make
 * its report (reports/model-report.ts) with the loss history from the run's
 * checkpoint, which is dropped right after, and store it with the version. Only a
 * reference to it returns to the workflow.
 */
import { loadConfig } from '../core/config.ts';
import { loadBackend, type LoadedBackend } from '../ml/backend.ts';
import type { FeatureStore } from '../registry/feature-store/index.ts';
import type { ModelRegistry } from '../registry/models/index.ts';
import type { TrainingStore } from '../registry/training/index.ts';
import { generateModelReport, reportRoute } from '../reports/model-report.ts';
import { withDomainFailures } from './failures.ts';
import { heartbeatWhile } from './heartbeat.ts';

/** Where a version's report is: served by `fti serve` at `route`, written to a file by `command`. */
export interface ModelReportRef {
  model: string;
  version: number;
  route: string;
  command: string;
  sizeBytes: number;
}

export interface ModelReportDeps {
  features: FeatureStore;
  training: TrainingStore;
  registry: ModelRegistry;
  backend: LoadedBackend | null;
  /** The Temporal Web UI, for the run's link (default: TEMPORAL_UI_URL and TEMPORAL_NAMESPACE). */
  temporalUi?: { url: string; namespace: string };
}

export function createModelReportActivities({ features, training, registry, backend, temporalUi = configuredUi() }: ModelReportDeps) {
  const tf = async () => (backend ?? (await loadBackend('cpu'))).tf;
  return withDomainFailures({
    /** Makes and stores the version's report (again, on a retry: a report is derived, so the last one stands). */
    async writeModelReport(input: { model: string; version: number; runKey?: string }): Promise<ModelReportRef> {
      const checkpoint = input.runKey ? await training.loadCheckpoint(input.runKey) : undefined;
      let stage = 'start';
      const report = await heartbeatWhile(
        () => ({ stage: `report: ${stage}` }),
        generateModelReport({ registry, features, training, tf }, input.model, input.version, {
          source: 'training',
          ...(checkpoint ? { history: checkpoint.history } : {}),
          ...(temporalUi ? { temporalUi } : {}),
          // The slow steps run side by side: the heartbeat names both once both have started.
          onStage: (s) => {
            stage = stage === 'start' ? s : `${stage} and ${s}`;
          },
        }),
      );
      return { model: input.model, version: input.version, route: reportRoute(input.model, input.version), command: `fti models report ${input.model}@${input.version}`, sizeBytes: report.sizeBytes };
    },
  });
}

function configuredUi(): { url: string; namespace: string } | undefined {
  const config = loadConfig();
  return config.temporalUiUrl ? { url: config.temporalUiUrl, namespace: config.temporalNamespace } : undefined;
}
