/**
 * registry/training: what the training pipeline keeps between its steps. It owns
 * training datasets (a feature view's point-in-time join materialized as td_<id>,
 * with splits, train statistics and the commits it read) and training checkpoints
 * (the latest epoch of each run, so a retried train activity resumes). It reads
 * features only through the feature store's view snapshot; it never writes features
 * or model versions.
 */
import type { Knex } from 'knex';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import type { FeatureViewRecord } from '../feature-store/index.ts';
import { databaseOf } from '../db/index.ts';
import { deleteCheckpoint, loadCheckpoint, saveCheckpoint, type StoredCheckpoint } from './checkpoints.ts';
import {
  createTrainingDataset,
  datasetsUsingCommit,
  getTrainingDataset,
  streamSplit,
  streamSplitThroughView,
  type CreateTrainingDatasetOptions,
  type Split,
  type SplitRowThroughView,
  type ThroughView,
  type TrainingDataset,
} from './datasets.ts';
import { splitDistributions, type DistributionBin, type FeatureDistribution } from './distributions.ts';
import { reapDatasets, type DatasetGcOptions, type DatasetGcResult, type KeptDataset, type ReapedDataset } from './gc.ts';

export class TrainingStore {
  private readonly knex: Knex;

  constructor({ knex }: { knex: Knex }) {
    this.knex = knex;
  }

  /** The database and schema this store reads, for a thread that reads them over a pool of its own. */
  database(): { url: string; schema: string } {
    return databaseOf(this.knex);
  }

  /** Materializes the view's point-in-time join over its latest commits (idempotent per key). */
  createDataset(view: FeatureViewRecord, options: CreateTrainingDatasetOptions): Promise<TrainingDataset> {
    return createTrainingDataset(this.knex, view, options);
  }

  /** A ready dataset; NotFound or Conflict (still creating, failed) otherwise. */
  dataset(datasetId: number): Promise<TrainingDataset> {
    return getTrainingDataset(this.knex, datasetId);
  }

  /** A split's rows in batches through a cursor, in the table's stored (shuffled) order. */
  streamSplit(dataset: TrainingDataset, split: Split, columns: string[], batchSize?: number): AsyncGenerator<Array<Record<string, unknown>>> {
    return streamSplit(this.knex, dataset, split, columns, batchSize);
  }

  /**
   * A split's rows (the `columns` asked for), each beside the features another feature
   * view computes point-in-time for the same spine row (entity keys + event time) as of
   * `through.snapshot`: how a model trained on that view sees this dataset's rows.
   * `datasetView` is the dataset's own view; the two spines must share keys and event time.
   */
  streamSplitThroughView(dataset: TrainingDataset, datasetView: FeatureViewDefinition, split: Split, columns: string[], through: ThroughView, batchSize?: number): AsyncGenerator<SplitRowThroughView[]> {
    return streamSplitThroughView(this.knex, dataset, datasetView, split, columns, through, batchSize);
  }

  /** Each feature's distribution in the train and test splits, on shared bins (for the model report). */
  splitDistributions(dataset: TrainingDataset, view: FeatureViewDefinition): Promise<FeatureDistribution[]> {
    return splitDistributions(this.knex, dataset, view);
  }

  /** Which datasets read a commit (lineage). */
  datasetsUsingCommit(commit: FeatureGroupCommitRef): Promise<number[]> {
    return datasetsUsingCommit(this.knex, commit);
  }

  /**
   * Garbage collection (`fti gc`): datasets no model version names, older than the
   * retention, get their td_<id> tables dropped and are marked 'reaped' (reading one then
   * says so); leftover td_joining_* scratch tables go too when no build can be running.
   */
  reapDatasets(options: DatasetGcOptions): Promise<DatasetGcResult> {
    return reapDatasets(this.knex, options);
  }

  saveCheckpoint(stored: StoredCheckpoint): Promise<void> {
    return saveCheckpoint(this.knex, stored);
  }

  loadCheckpoint(runKey: string): Promise<StoredCheckpoint | undefined> {
    return loadCheckpoint(this.knex, runKey);
  }

  deleteCheckpoint(runKey: string): Promise<void> {
    return deleteCheckpoint(this.knex, runKey);
  }
}

export type { CreateTrainingDatasetOptions, Split, SplitRowThroughView, StoredCheckpoint, ThroughView, TrainingDataset };
export type { DistributionBin, FeatureDistribution };
export type { DatasetGcOptions, DatasetGcResult, KeptDataset, ReapedDataset };
export { packPasses, trainMoments } from './datasets.ts';
export { SplitStatisticsTap, type ChunkStatistics } from './split-statistics.ts';
export { shuffleKey, type ServerText } from './shuffle-key.ts';
