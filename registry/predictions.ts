/**
 * The predictions facade: prediction runs (batch inference) and what they read and
 * write. Each concern lives in a module of its own beside this file:
 *
 *   prediction-runs.ts     runs, pinned commits, partitions
 *   prediction-reads.ts    the point-in-time feature read of a partition; stored predictions
 *   prediction-writes.ts   a partition's delete + COPY + done, in one transaction
 *   prediction-online.ts   online features of a view, for the prediction server
 */
import type { Knex } from 'knex';
import type { FeatureViewDefinition } from '../features/views.ts';
import {
  countPredictions,
  countSpineRowsByPartition,
  listPredictions,
  listRejects,
  snapshotOf,
  streamViewRows,
  type StoredPrediction,
  type StoredReject,
  type ViewSnapshot,
} from './prediction-reads.ts';
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
  type PitStrategy,
  type PredictionPartition,
  type PredictionRun,
} from './prediction-runs.ts';
import { writePartition, type PartitionWrite } from './prediction-writes.ts';
import { resolveViewSnapshot, type CommitRef } from './training-datasets.ts';

export class PredictionStore {
  constructor(readonly knex: Knex) {}

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

  /** The view's groups with their latest commits: what a new run pins. */
  latestSnapshot(view: FeatureViewDefinition): Promise<ViewSnapshot> {
    return resolveViewSnapshot(this.knex, view);
  }

  /** The view's groups as of a run's pinned commits. */
  snapshot(view: FeatureViewDefinition, commits: CommitRef[]): Promise<ViewSnapshot> {
    return snapshotOf(this.knex, view, commits);
  }

  countSpineRows(view: FeatureViewDefinition, snapshot: ViewSnapshot, boundaries: Date[]): Promise<number[]> {
    return countSpineRowsByPartition(this.knex, view, snapshot, boundaries);
  }

  featureRows(view: FeatureViewDefinition, snapshot: ViewSnapshot, options: { start: Date; end: Date; strategy: PitStrategy; batchSize?: number }): AsyncGenerator<Array<Record<string, unknown>>> {
    return streamViewRows(this.knex, view, snapshot, options);
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

  runsUsingCommit(commit: CommitRef): Promise<string[]> {
    return runsUsingCommit(this.knex, commit);
  }
}

export type { NewPredictionRun, PitStrategy, PredictionPartition, PredictionRun, StoredPrediction, StoredReject, ViewSnapshot, PartitionWrite };
export type { ScoredBatch, RejectedRow } from './prediction-writes.ts';
export { entityKeyOf } from './prediction-writes.ts';
export { createOnlineLookup, type OnlineKey, type OnlineViewLookup } from './prediction-online.ts';

/** Whether Postgres answers at all (the server's health check), within `timeoutMs`. */
export async function databaseReachable(knex: Knex, timeoutMs = 2_000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([knex.raw('select 1').then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
