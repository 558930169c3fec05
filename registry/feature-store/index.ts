/**
 * registry/feature-store: the feature store. It owns feature groups (their offline,
 * history, online and per-commit tables), commits and their validation, rejected
 * rows, statistics, SQL rolling aggregates, point-in-time reads, and feature views
 * with the view snapshot that training datasets and prediction runs both read
 * through. It never knows about models, datasets or predictions.
 *
 * `FeatureStore` is the door for activities; the SQL builders exported below
 * (point-in-time join, snapshots, group tables) are the door for the other stores.
 */
import type { Knex } from 'knex';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import type { FeatureGroupDefinition } from '../../features/definitions.ts';
import type { FeatureReject } from '../../features/ingest.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import type { Sql } from '../db/index.ts';
import { computeAggregates, partitionRowRange, type AggregateRun } from './aggregates.ts';
import { compactGroup, type CompactionOptions, type CompactionResult } from './compaction.ts';
import { abortCommit, commitStaged, type CommitOutcome, type CommitRules } from './commit.ts';
import { beginCommit, committedSpan, getCommit, latestCommit, listCommits, type BeginCommitInput, type CommitRefusal, type CommitStatus, type FeatureCommit, type ValidationReport } from './commits.ts';
import { entityRowsQuery } from './entity-rows.ts';
import { reapStagingCommits, type KeptCommit, type ReapedCommit, type StagingGcOptions, type StagingGcResult } from './gc.ts';
import { getFeatureGroup, listFeatureGroups, registerFeatureGroup, type FeatureGroupRecord } from './groups.ts';
import { pointInTimeSql, type PitStrategy } from './point-in-time.ts';
import { getOnlineFeatures, readOffline, RetrievalJob, type FeatureRecord, type ReadOptions } from './reads.ts';
import { sourceQueryRows, type SourceQueryOptions } from './source-query.ts';
import { clearRejects, clearStagedRows, copyIntoCommit, insertRejects, listRejects, stagePartition } from './staging.ts';
import { getStatistics, type FeatureStatistics } from './statistics.ts';
import { upgradeGroupTables, type GroupShape } from './tables.ts';
import { latestViewSnapshot, pinnedViewSnapshot, viewQuery, type ViewSnapshot } from './view-snapshot.ts';
import { getFeatureView, getFeatureViewById, listViewVersions, registerFeatureView, type FeatureViewRecord } from './views.ts';
import type { TimeSpan } from '../../features/sources/types.ts';

export class FeatureStore {
  private readonly knex: Knex;

  constructor({ knex }: { knex: Knex }) {
    this.knex = knex;
  }

  register(def: FeatureGroupDefinition): Promise<FeatureGroupRecord> {
    return registerFeatureGroup(this.knex, def);
  }

  group(name: string, version?: number): Promise<FeatureGroupRecord> {
    return getFeatureGroup(this.knex, name, version);
  }

  groups(): Promise<FeatureGroupRecord[]> {
    return listFeatureGroups(this.knex);
  }

  beginCommit(group: FeatureGroupRecord, input: BeginCommitInput): Promise<FeatureCommit> {
    return beginCommit(this.knex, group, input);
  }

  copyRows(group: FeatureGroupRecord, commitId: number, chunks: AsyncIterable<Buffer> | Iterable<Buffer>, signal?: AbortSignal): Promise<void> {
    return copyIntoCommit(this.knex, group, commitId, chunks, signal);
  }

  reject(commitId: number, rows: FeatureReject[]): Promise<void> {
    return insertRejects(this.knex, commitId, rows);
  }

  /**
   * One attempt at a partition of a commit, fenced and cancellable (see staging.ts
   * `stagePartition`): `stage` writes through the attempt's own transaction, which first
   * clears what an earlier attempt of the partition staged (rows in `range`, or all).
   * Rejects go through this store (`reject`), beside the attempt's COPY.
   */
  async stagePartition<T>(group: GroupShape, commitId: number, partition: { index: number; range?: { rowStart: number; rowEnd: number } }, signal: AbortSignal | undefined, work: (stage: FeatureStore) => Promise<T>): Promise<T> {
    await clearRejects(this.knex, commitId, partition.range);
    return stagePartition(this.knex, commitId, partition.index, signal, async (trx) => {
      await clearStagedRows(trx, group, commitId, partition.range);
      return work(new FeatureStore({ knex: trx }));
    });
  }

  /** Computes one entity-hash partition of an aggregate group into its commit (a fenced, cancellable attempt: see stagePartition). */
  aggregate(run: AggregateRun, signal?: AbortSignal): Promise<number> {
    return this.stagePartition(run.target, run.commitId, { index: run.partition, range: partitionRowRange(run.partition) }, signal, (stage) => computeAggregates(stage.knex, run, signal));
  }

  async commit(group: FeatureGroupRecord, rules: CommitRules, commitId: number): Promise<CommitOutcome> {
    await upgradeGroupTables(this.knex, group);
    return commitStaged(this.knex, group, rules, commitId);
  }

  /** Rewrites the group's offline partitions written to since their last compaction in key order; every snapshot reads the same rows (compaction.ts). */
  compact(group: FeatureGroupRecord, options?: CompactionOptions): Promise<CompactionResult> {
    return compactGroup(this.knex, group, options);
  }

  abort(group: FeatureGroupRecord, commitId: number, error: string): Promise<void> {
    return abortCommit(this.knex, group, commitId, error);
  }

  /**
   * Garbage collection (`fti gc`): commit attempts still 'staging' after the retention
   * whose workflow run is closed (terminated runs leave them) are failed with the reap
   * reason and their tables dropped. Committed commits and their partitions are never
   * touched.
   */
  reapStaging(options: StagingGcOptions): Promise<StagingGcResult> {
    return reapStagingCommits(this.knex, options);
  }

  getCommit(commitId: number): Promise<FeatureCommit> {
    return getCommit(this.knex, commitId);
  }

  commits(group: FeatureGroupRecord, filter: { status?: CommitStatus } = {}): Promise<FeatureCommit[]> {
    return listCommits(this.knex, group.id, filter);
  }

  latestCommit(group: FeatureGroupRecord): Promise<FeatureCommit | undefined> {
    return latestCommit(this.knex, group.id);
  }

  /** The event-time span [start, end) of the group's committed rows; undefined before its first commit. */
  committedSpan(group: FeatureGroupRecord): Promise<TimeSpan | undefined> {
    return committedSpan(this.knex, group.id);
  }

  read(group: FeatureGroupRecord, options?: ReadOptions): RetrievalJob {
    return readOffline(this.knex, group, options);
  }

  /** Each entity's online row (for a windowed group: the change point in force at `at`, default now). */
  online(group: FeatureGroupRecord, keys: Array<Record<string, unknown>>, at?: Date): Promise<Array<FeatureRecord | undefined>> {
    return getOnlineFeatures(this.knex, group, keys, at);
  }

  statistics(commitId: number): Promise<FeatureStatistics[]> {
    return getStatistics(this.knex, commitId);
  }

  rejects(commitId: number): Promise<FeatureReject[]> {
    return listRejects(this.knex, commitId);
  }

  /**
   * Rows of a definition's own SQL source (`$1`, `$2`: the window), streamed through a
   * read-only cursor; a query Postgres refuses (several statements, a write, a syntax
   * error) fails as FtiInvalidInput, not retried.
   */
  sourceRows(query: string, params: unknown[], batchSize: number, options?: SourceQueryOptions): AsyncGenerator<Array<Record<string, unknown>>> {
    return sourceQueryRows(this.knex, query, params, batchSize, options);
  }

  /** Idempotent; a different definition under an existing name and version is refused (Conflict). */
  registerView(def: FeatureViewDefinition): Promise<FeatureViewRecord> {
    return registerFeatureView(this.knex, def);
  }

  /** A registered view (the latest version when none is given). */
  view(name: string, version?: number): Promise<FeatureViewRecord> {
    return getFeatureView(this.knex, name, version);
  }

  viewById(id: number): Promise<FeatureViewRecord> {
    return getFeatureViewById(this.knex, id);
  }

  /** Registered views with their versions (at most `limit` names; only `name`'s when given). */
  viewVersions(options?: { name?: string; limit?: number }): Promise<Array<{ name: string; versions: number[] }>> {
    return listViewVersions(this.knex, options);
  }

  /** The view's groups with their latest commits: what a new dataset or prediction run pins. */
  latestSnapshot(view: FeatureViewDefinition): Promise<ViewSnapshot> {
    return latestViewSnapshot(this.knex, view);
  }

  /**
   * A view's point-in-time rows over a snapshot (Feast's get_historical_features):
   * spine keys, event time, the label and every view feature, for spine rows in
   * [start, end). The same SQL training datasets and batch inference read.
   */
  viewRows(view: FeatureViewDefinition, snapshot: ViewSnapshot, options: { start?: Date; end?: Date; withLabel?: boolean; strategy?: PitStrategy } = {}): RetrievalJob {
    const query = pointInTimeSql(viewQuery(view, snapshot, { start: options.start, end: options.end, withLabel: options.withLabel ?? true, strategy: options.strategy ?? 'window' }));
    return new RetrievalJob(this.knex, async () => query);
  }

  /**
   * A view's point-in-time rows for given entities at given times (entity-rows.ts):
   * `entities` has `_id` (bigint), `_keys` (jsonb: the spine's entity keys) and `_at`
   * (timestamptz); each row comes back with its `_id`, the spine keys, `_at` under the
   * spine's event-time name, and every view feature.
   */
  entityRows(view: FeatureViewDefinition, snapshot: ViewSnapshot, options: { entities: Sql; strategy?: PitStrategy }): RetrievalJob {
    const query = pointInTimeSql(entityRowsQuery(view, snapshot, { entities: options.entities, strategy: options.strategy ?? 'lateral' }));
    return new RetrievalJob(this.knex, async () => query);
  }

  /** The view's groups as of commits pinned earlier (a prediction run's). */
  pinnedSnapshot(view: FeatureViewDefinition, commits: FeatureGroupCommitRef[]): Promise<ViewSnapshot> {
    return pinnedViewSnapshot(this.knex, view, commits);
  }
}

export type { CommitRefusal, CommitStatus, FeatureCommit, FeatureGroupRecord, FeatureRecord, FeatureStatistics, FeatureViewRecord, ReadOptions, RetrievalJob, ValidationReport, ViewSnapshot };
export type { KeptCommit, ReapedCommit, StagingGcOptions, StagingGcResult };
export type { CompactedPartition, CompactionOptions, CompactionResult } from './compaction.ts';
// For the other stores: the SQL they build on (a training dataset's or a prediction run's read).
export { chunkSizesSql, pointInTimeColumns, pointInTimeSql, type PitPlan, type PitQuery, type PitStrategy } from './point-in-time.ts';
export { pointInTimeBatches, pointInTimeRows, streamPointInTime, type RowFields, type RowTap, type ExtraColumn, type SpineInt4, type SpineOrder, type StreamChunk, type StreamOptions, type StreamStep } from './pit-stream.ts';
export { KeyIds, type TimeCuts } from './spine-rows.ts';
// For tests: a chunk's spine read on two threads (spine-rows.ts, spine-helper.ts).
export { concatSpines, newChunkSpine, postedSpine, receivedSpine, type ChunkSpine } from './spine-rows.ts';
export { spineThreadReads } from './spine-helper.ts';
export { joinOnlineRow, scannedTables, snapshotSql } from './reads.ts';
export { computeStatistics } from './statistics.ts';
export { orderByKeyThenTime, orderByUint32 } from './key-order.ts';
export { segmentCache, SegmentCache, segmentScratch } from './segments.ts';
export { labelledSpineRange, type SpineRange } from './spine-range.ts';
export { groupTables } from './tables.ts';
export { UNCHANGED_SINCE_COMPACTION } from './compaction.ts';
export { latestViewSnapshot, viewQuery } from './view-snapshot.ts';
export { ENTITY_ROW_ID } from './entity-rows.ts';
export { entityChangePoints, type EntityEvents, type WindowOutput, type WindowPlan } from './window-changes.ts';
export { getFeatureGroup } from './groups.ts';
