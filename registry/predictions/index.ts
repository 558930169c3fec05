/**
 * registry/predictions: what inference writes. It owns prediction runs (the model
 * version and feature commits each pins, its partitions), the predictions and
 * rejected rows of each partition (written exactly once), and the online feature
 * lookup of a view for the prediction server. It reads features through the
 * feature store's view snapshot and never writes features, datasets or models.
 */
import type { Knex } from 'knex';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import type { ColumnBatch } from '../../core/columns.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import type { ViewSnapshot } from '../feature-store/index.ts';
import { countPredictions, countSpineRowsByBucket, listPredictions, listRejects, streamViewBatches, type FeatureBatchOptions, type TimeBuckets, type StoredPrediction, type StoredReject } from './reads.ts';
import {
  completePredictionRun,
  createPredictionRun,
  failPredictionRun,
  findPredictionRun,
  getPartition,
  getPredictionRun,
  listPartitions,
  resumePredictionRun,
  runsUsingCommit,
  type NewPredictionRun,
  type PredictionPartition,
  type PredictionRun,
} from './runs.ts';
import { createOnlineLookup, type OnlineLookupOptions, type OnlineViewLookup } from './online.ts';
import { writePartition, type PartitionWrite } from './writes.ts';

export class PredictionStore {
  private readonly knex: Knex;

  constructor({ knex }: { knex: Knex }) {
    this.knex = knex;
  }

  findRun(runId: string): Promise<PredictionRun | undefined> {
    return findPredictionRun(this.knex, runId);
  }

  run(runId: string): Promise<PredictionRun> {
    return getPredictionRun(this.knex, runId);
  }

  createRun(run: NewPredictionRun): Promise<{ run: PredictionRun; created: boolean }> {
    return createPredictionRun(this.knex, run);
  }

  resumeRun(runId: string, workflow: { workflowId?: string; workflowRunId?: string }): Promise<PredictionRun> {
    return resumePredictionRun(this.knex, runId, workflow);
  }

  completeRun(runId: string): Promise<PredictionRun> {
    return completePredictionRun(this.knex, runId);
  }

  failRun(runId: string, error: string): Promise<void> {
    return failPredictionRun(this.knex, runId, error);
  }

  partitions(runId: string): Promise<PredictionPartition[]> {
    return listPartitions(this.knex, runId);
  }

  partition(runId: string, index: number): Promise<PredictionPartition> {
    return getPartition(this.knex, runId, index);
  }

  countSpineRows(view: FeatureViewDefinition, snapshot: ViewSnapshot, buckets: TimeBuckets): Promise<number[]> {
    return countSpineRowsByBucket(this.knex, view, snapshot, buckets);
  }

  featureBatches(view: FeatureViewDefinition, snapshot: ViewSnapshot, options: FeatureBatchOptions): AsyncGenerator<ColumnBatch> {
    return streamViewBatches(this.knex, view, snapshot, options);
  }

  writePartition(write: PartitionWrite): Promise<{ partition: PredictionPartition; written: boolean }> {
    return writePartition(this.knex, write);
  }

  predictions(runId: string, options?: { limit?: number; start?: Date; end?: Date }): Promise<StoredPrediction[]> {
    return listPredictions(this.knex, runId, options);
  }

  countPredictions(runId: string): Promise<Array<{ version: number; rows: number; entities: number }>> {
    return countPredictions(this.knex, runId);
  }

  rejects(runId: string, limit?: number): Promise<StoredReject[]> {
    return listRejects(this.knex, runId, limit);
  }

  runsUsingCommit(commit: FeatureGroupCommitRef): Promise<string[]> {
    return runsUsingCommit(this.knex, commit);
  }

  /** Checks the view can be served online and prepares its one-round-trip feature lookup. */
  onlineLookup(view: FeatureViewDefinition, options?: OnlineLookupOptions): Promise<OnlineViewLookup> {
    return createOnlineLookup(this.knex, view, options);
  }
}

export type { NewPredictionRun, PartitionWrite, PredictionPartition, PredictionRun, StoredPrediction, StoredReject };
export type { ScoredBatch } from './writes.ts';
export { entityKeyField, entityKeyOf } from './writes.ts';
export { bucketBoundaries, type TimeBuckets } from './reads.ts';
export type { OnlineKey, OnlineLookupOptions, OnlineViewLookup } from './online.ts';
