/**
 * Gathers a model version's report data: the version's own record (metrics, params,
 * lineage), its test split scored again with the registered artifact (ROC,
 * calibration, confusion matrix), each feature's train and test distributions, and
 * the loss history when the caller has it (the training run's checkpoint holds it
 * until registration; a version registered before reports existed has none).
 */
import { FailureType, FtiError } from '../core/errors.ts';
import type { Tf } from '../ml/backend.ts';
import { toBatches } from '../ml/batches.ts';
import { createEncoder } from '../ml/encoding.ts';
import { classifierCurves, regressorCurves, type EvaluationCurves } from '../ml/evaluation-curves.ts';
import { collectScores } from '../ml/predict.ts';
import { loadPredictor } from '../ml/predictor.ts';
import type { EpochProgress } from '../ml/train.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import type { FeatureStore } from '../registry/feature-store/index.ts';
import type { ModelRegistry, ModelVersion } from '../registry/models/index.ts';
import type { TrainingDataset, TrainingStore } from '../registry/training/index.ts';
import type { ModelReportData, Part } from './model-report-data.ts';

export interface ReportStores {
  registry: ModelRegistry;
  features: FeatureStore;
  training: TrainingStore;
  /** TensorFlow.js with a backend loaded (scoring an MLP needs it). */
  tf: () => Promise<Tf>;
}

export interface CollectOptions {
  /** The training run's loss history (from its checkpoint); absent: "not recorded". */
  history?: readonly EpochProgress[];
  /** The Temporal Web UI's base URL and namespace: the run's link in the lineage. */
  temporalUi?: { url: string; namespace: string };
  /** Called as each slow step starts (an activity heartbeats here); the two run side by side. */
  onStage?: (stage: 'score' | 'distributions') => void;
}

const SCORE_BATCH = 4096;

export async function collectReportData(stores: ReportStores, version: ModelVersion, options: CollectOptions = {}): Promise<ModelReportData> {
  const family = version.params['family'] === 'gbdt' ? 'gbdt' : 'mlp';
  const source = await datasetOf(stores, version);
  // Side by side: scoring is mostly the worker's CPU, the distributions are Postgres'.
  const [evaluation, distributions] =
    'missing' in source
      ? [source, source]
      : await Promise.all([
          part(() => (options.onStage?.('score'), scoreTestSplit(stores, version, source.value.dataset, source.value.view))),
          part(() => (options.onStage?.('distributions'), stores.training.splitDistributions(source.value.dataset, source.value.view))),
        ]);
  const { lineage } = version;
  const ui = options.temporalUi;
  return {
    format: 1,
    model: version.model,
    version: version.version,
    description: version.description,
    registeredAt: version.createdAt.toISOString(),
    aliases: version.aliases,
    outputKind: version.signature.output.kind,
    label: version.signature.output.name,
    family,
    metrics: version.metrics,
    params: version.params,
    lineage: {
      ...lineage,
      ...(ui && lineage.workflowId && lineage.runId ? { temporalUiUrl: temporalRunUrl(ui.url, ui.namespace, lineage.workflowId, lineage.runId) } : {}),
    },
    dataset:
      'missing' in source
        ? source
        : {
            value: {
              id: source.value.dataset.id,
              windowStart: source.value.dataset.windowStart.toISOString(),
              windowEnd: source.value.dataset.windowEnd.toISOString(),
              validationStart: source.value.dataset.validationStart.toISOString(),
              testStart: source.value.dataset.testStart.toISOString(),
              rowCounts: source.value.dataset.rowCounts,
            },
          },
    evaluation,
    history: options.history?.length
      ? { value: { unit: family === 'gbdt' ? 'round' : 'epoch', points: options.history.map((h) => ({ step: h.epoch, loss: h.loss, ...(h.valLoss !== undefined ? { valLoss: h.valLoss } : {}) })) } }
      : {
          missing: options.history
            ? 'not recorded: the training run reported no epochs or rounds'
            : 'not recorded: this report was made after registration, and the per-epoch history lived only in the training run’s checkpoint (reports made by the training pipeline keep it)',
        },
    distributions,
    generatedAt: new Date().toISOString(),
  };
}

/** The run's page in the Temporal Web UI. */
export function temporalRunUrl(uiUrl: string, namespace: string, workflowId: string, runId: string): string {
  return `${uiUrl.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(runId)}/history`;
}

async function datasetOf(stores: ReportStores, version: ModelVersion): Promise<Part<{ dataset: TrainingDataset; view: FeatureViewDefinition }>> {
  const id = version.lineage.trainingDatasetId;
  if (id === undefined) return { missing: 'not available: the version records no training dataset in its lineage' };
  return part(async () => {
    const dataset = await stores.training.dataset(id);
    const view = (await stores.features.viewById(dataset.featureViewId)).definition;
    return { dataset, view };
  });
}

/** A part that a missing or reaped dataset (NotFound, Conflict) leaves out, saying why; other errors propagate. */
async function part<T>(fn: () => Promise<T>): Promise<Part<T>> {
  try {
    return { value: await fn() };
  } catch (err) {
    if (err instanceof FtiError && (err.type === FailureType.NotFound || err.type === FailureType.Conflict)) return { missing: `not available: ${err.message}` };
    throw err;
  }
}

async function scoreTestSplit(stores: ReportStores, version: ModelVersion, dataset: TrainingDataset, view: FeatureViewDefinition): Promise<EvaluationCurves> {
  if (dataset.rowCounts.test === 0) throw new FtiError(FailureType.Conflict, `training dataset ${dataset.id} has an empty test split`);
  const artifact = await stores.registry.loadArtifact(version.model, version.version);
  const predictor = await loadPredictor(await stores.tf(), artifact);
  try {
    const encoder = createEncoder(version.signature);
    const columns = [...view.features.map((f) => f.name), view.label.name];
    const batches = toBatches(stores.training.streamSplit(dataset, 'test', columns, SCORE_BATCH * 4), encoder, { label: view.label.name, batchSize: SCORE_BATCH });
    const { labels, scores } = await collectScores((x, size) => predictor.predict(x, size), batches);
    if (version.signature.output.kind === 'binary_classifier') return classifierCurves(labels, scores, version.metrics['threshold'] ?? 0.5);
    return regressorCurves(labels, scores);
  } finally {
    predictor.dispose();
  }
}
