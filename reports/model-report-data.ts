/**
 * What a model report is drawn from: plain JSON, stored beside the page
 * (registry/models/reports.ts) so the page can be drawn again. A part that could not
 * be measured says why instead (`{ missing }`), and the page shows that sentence.
 */
import type { FeatureGroupCommitRef } from '../core/refs.ts';
import type { EvaluationCurves } from '../ml/evaluation-curves.ts';
import type { FeatureDistribution } from '../registry/training/index.ts';

export type Part<T> = { value: T } | { missing: string };

export interface LossPoint {
  /** The epoch (MLP) or boosting round (GBDT), 1-based. */
  step: number;
  loss: number;
  valLoss?: number;
}

export interface ModelReportData {
  /** Bumped when the shape changes. */
  format: 1;
  model: string;
  version: number;
  description: string | null;
  registeredAt: string;
  aliases: string[];
  outputKind: 'binary_classifier' | 'regressor';
  label: string;
  family: 'mlp' | 'gbdt';
  metrics: Record<string, number>;
  params: Record<string, unknown>;
  lineage: {
    featureView?: { name: string; version: number };
    trainingDatasetId?: number;
    featureGroupCommits: FeatureGroupCommitRef[];
    workflowId?: string;
    runId?: string;
    /** The run in the Temporal Web UI, when its address was known (TEMPORAL_UI_URL). */
    temporalUiUrl?: string;
    codeVersion?: string;
    tfjsBackend: string;
    trainedAt: string;
    trainingSeconds?: number;
  };
  dataset: Part<{
    id: number;
    windowStart: string;
    windowEnd: string;
    validationStart: string;
    testStart: string;
    rowCounts: Record<'train' | 'validation' | 'test', number>;
  }>;
  /** On the dataset's test split, scored again with the registered artifact. */
  evaluation: Part<EvaluationCurves>;
  /** Per epoch (MLP) or round (GBDT), as the trainer recorded it. */
  history: Part<{ unit: 'epoch' | 'round'; points: LossPoint[] }>;
  distributions: Part<FeatureDistribution[]>;
  generatedAt: string;
}
