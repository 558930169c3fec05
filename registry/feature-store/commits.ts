/** Commit attempts: created when a run is planned, committed or failed at its end. */
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../../core/errors.ts';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import type { FeatureReject } from '../../features/ingest.ts';
import { createCommitTable, type GroupShape } from './tables.ts';
import type { TimeSpan } from '../../features/sources/types.ts';

export type CommitStatus = 'staging' | 'committed' | 'failed';

/**
 * Why a commit attempt was refused: a rejected row under `strict`, more rejects than the
 * group's maximum reject ratio under `quarantine`, or no row left to commit from a source
 * that had some.
 */
export type CommitRefusal = 'strict' | 'reject_ratio' | 'no_rows';

export interface ValidationReport {
  policy: 'strict' | 'quarantine';
  rowsIn: number;
  rowsRejected: number;
  /** Rejection reasons counted by what they are about: a column, `key` or `row`. */
  reasons: Record<string, number>;
  /** The first rejected rows with their reasons (kept in the database only: never put in a failure's details). */
  sample: FeatureReject[];
  /** Why nothing was committed, when the commit was refused. */
  refusal?: CommitRefusal;
  /** Under quarantine: the largest share of rejected rows a commit may have. */
  maxRejectRatio?: number;
  /** Wall time of each step of the commit, in ms. */
  timingsMs?: Record<string, number>;
}

export interface FeatureCommit {
  id: number;
  featureGroupId: number;
  status: CommitStatus;
  idempotencyKey: string;
  workflowId: string | null;
  runId: string | null;
  windowStart: Date | null;
  windowEnd: Date | null;
  rowsIn: number;
  rowsCommitted: number;
  rowsInserted: number;
  rowsUpdated: number;
  rowsUnchanged: number;
  rowsRejected: number;
  minEventTime: Date | null;
  maxEventTime: Date | null;
  sourceCommits: FeatureGroupCommitRef[];
  validationReport: ValidationReport | null;
  error: string | null;
  createdAt: Date;
  finishedAt: Date | null;
  /** Position in the group's visibility order (null until committed): what snapshots are pinned by. */
  visibleSeq: number | null;
  /** When its rows became visible. */
  visibleAt: Date | null;
  /** The code that wrote it (git sha or FTI_CODE_VERSION), when known. */
  codeVersion: string | null;
}

export interface FeatureCommitRow {
  id: number;
  feature_group_id: number;
  status: CommitStatus;
  idempotency_key: string;
  workflow_id: string | null;
  run_id: string | null;
  window_start: Date | null;
  window_end: Date | null;
  rows_in: number;
  rows_committed: number;
  rows_inserted: number;
  rows_updated: number;
  rows_unchanged: number;
  rows_rejected: number;
  min_event_time: Date | null;
  max_event_time: Date | null;
  /** Longest a stored row took to become known (ms); null for commits made before it was recorded. */
  max_known_lag_ms: number | string | null;
  source_commits: FeatureGroupCommitRef[];
  validation_report: ValidationReport | null;
  error: string | null;
  created_at: Date;
  finished_at: Date | null;
  visible_seq: number | null;
  visible_at: Date | null;
  code_version: string | null;
}

export function toFeatureCommit(row: FeatureCommitRow): FeatureCommit {
  return {
    id: row.id,
    featureGroupId: row.feature_group_id,
    status: row.status,
    idempotencyKey: row.idempotency_key,
    workflowId: row.workflow_id,
    runId: row.run_id,
    windowStart: row.window_start,
    windowEnd: row.window_end,
    rowsIn: row.rows_in,
    rowsCommitted: row.rows_committed,
    rowsInserted: row.rows_inserted,
    rowsUpdated: row.rows_updated,
    rowsUnchanged: row.rows_unchanged,
    rowsRejected: row.rows_rejected,
    minEventTime: row.min_event_time,
    maxEventTime: row.max_event_time,
    sourceCommits: row.source_commits,
    validationReport: row.validation_report,
    error: row.error,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
    visibleSeq: row.visible_seq,
    visibleAt: row.visible_at,
    codeVersion: row.code_version,
  };
}

export interface BeginCommitInput {
  idempotencyKey: string;
  workflowId?: string;
  runId?: string;
  windowStart?: Date;
  windowEnd?: Date;
  sourceCommits?: FeatureGroupCommitRef[];
  codeVersion?: string;
  /**
   * Where the rows' event times are expected, when the run has no whole window to say it
   * (a Parquet file's statistics, an aggregate's source span): the staging table is
   * partitioned by it. A hint: rows outside it are staged all the same.
   */
  expectedSpan?: TimeSpan;
}

/**
 * Creates (or, for the same idempotency key, finds) a commit attempt and its
 * staging table. An activity retry therefore continues the same attempt.
 */
export async function beginCommit(knex: Knex, group: GroupShape & { id: number }, input: BeginCommitInput): Promise<FeatureCommit> {
  const [row] = await knex<FeatureCommitRow>('feature_commits')
    .insert({
      feature_group_id: group.id,
      idempotency_key: input.idempotencyKey,
      status: 'staging',
      workflow_id: input.workflowId ?? null,
      run_id: input.runId ?? null,
      window_start: input.windowStart ?? null,
      window_end: input.windowEnd ?? null,
      source_commits: JSON.stringify(input.sourceCommits ?? []) as unknown as FeatureGroupCommitRef[],
      code_version: input.codeVersion ?? null,
    })
    .onConflict(['feature_group_id', 'idempotency_key'])
    .merge(['idempotency_key'])
    .returning('*');
  if (!row) throw new Error('insert into feature_commits returned no row');
  const span = row.window_start && row.window_end ? { start: row.window_start, end: row.window_end } : input.expectedSpan;
  if (row.status === 'staging') await createCommitTable(knex, group, row.id, span);
  return toFeatureCommit(row);
}

/** The event-time span [start, end) of a group's committed rows, or undefined before its first commit. */
export async function committedSpan(knex: Knex, featureGroupId: number): Promise<TimeSpan | undefined> {
  const row = (await knex('feature_commits')
    .where({ feature_group_id: featureGroupId, status: 'committed' })
    .min({ start: 'min_event_time' })
    .max({ end: 'max_event_time' })
    .first()) as { start: Date | null; end: Date | null } | undefined;
  return row?.start && row.end ? { start: row.start, end: new Date(row.end.getTime() + 1) } : undefined;
}

export async function getCommit(knex: Knex, commitId: number): Promise<FeatureCommit> {
  const row = await knex<FeatureCommitRow>('feature_commits').where({ id: commitId }).first();
  if (!row) throw new FtiError(FailureType.NotFound, `feature commit ${commitId} does not exist`);
  return toFeatureCommit(row);
}

export async function listCommits(knex: Knex, featureGroupId: number, { status }: { status?: CommitStatus } = {}): Promise<FeatureCommit[]> {
  const query = knex<FeatureCommitRow>('feature_commits').where({ feature_group_id: featureGroupId }).orderBy('id');
  if (status) void query.andWhere({ status });
  return (await query).map(toFeatureCommit);
}

/** The group's most recently visible commit, if any (visibility order, not id order). */
export async function latestCommit(knex: Knex, featureGroupId: number): Promise<FeatureCommit | undefined> {
  const row = await knex<FeatureCommitRow>('feature_commits').where({ feature_group_id: featureGroupId, status: 'committed' }).orderBy('visible_seq', 'desc').first();
  return row ? toFeatureCommit(row) : undefined;
}

/**
 * A snapshot of a group: its commits that became visible no later than the pinned one,
 * named by the pin's place in visibility order (whatever the ids). Reads filter on the
 * commits that came after it (reads.ts `snapshotFilter`), not on a list of the visible
 * ones, which grows with every commit.
 */
export interface SnapshotPin {
  featureGroupId: number;
  visibleSeq: number;
  /**
   * The longest any of the snapshot's commits' rows took to become known (their
   * max_known_lag_ms); null when one of them predates that record, so nothing is
   * bounded by it. Read with the pin, so that queries carry it as a constant: as a
   * subquery, the planner could not estimate the time ranges it bounds.
   */
  maxKnownLagMs: number | null;
}

/** The snapshot pinned by `commitId` (a committed commit), with its commits' longest known lag: one query. */
export async function snapshotPin(knex: Knex, commitId: number): Promise<SnapshotPin> {
  const result = (await knex.raw(
    `select p.feature_group_id, p.visible_seq,
            (select case when count(*) = count(c.max_known_lag_ms) then coalesce(max(c.max_known_lag_ms), 0) end
             from feature_commits c
             where c.feature_group_id = p.feature_group_id and c.status = 'committed' and c.visible_seq <= p.visible_seq) as lag
     from feature_commits p where p.id = ? and p.status = 'committed'`,
    [commitId],
  )) as { rows: Array<{ feature_group_id: number | string; visible_seq: number | string | null; lag: number | string | null }> };
  const row = result.rows[0];
  if (!row || row.visible_seq === null) throw new FtiError(FailureType.NotFound, `feature commit ${commitId} is not a committed commit: there is no snapshot as of it`);
  return { featureGroupId: Number(row.feature_group_id), visibleSeq: Number(row.visible_seq), maxKnownLagMs: row.lag === null ? null : Number(row.lag) };
}
