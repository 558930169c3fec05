/**
 * Prediction runs and their partitions: created once per run id (with the model
 * version and feature commits pinned), resumed by a re-run of an unfinished run,
 * completed when every partition is done. Rows never leave this module unmapped.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import { transaction } from '../db/index.ts';
import type { PitPlan } from '../feature-store/index.ts';

export type PredictionRunStatus = 'running' | 'completed' | 'failed';

export interface PredictionRun {
  runId: string;
  model: string;
  /** What the caller asked for: an alias, 'latest' or a version number as text. */
  requestedRef: string;
  /** The version resolved when the run was created, used by every partition. */
  version: number;
  featureView: { name: string; version: number };
  windowStart: Date;
  windowEnd: Date;
  strategy: PitPlan;
  status: PredictionRunStatus;
  spineRows: number;
  rows: number;
  rowsRejected: number;
  /** The feature group commits every partition reads. */
  commits: FeatureGroupCommitRef[];
  workflowId: string | null;
  workflowRunId: string | null;
  error: string | null;
  createdAt: Date;
  finishedAt: Date | null;
}

export interface PredictionPartition {
  runId: string;
  index: number;
  start: Date;
  end: Date;
  spineRows: number;
  status: 'pending' | 'done';
  rows: number;
  rowsRejected: number;
  finishedAt: Date | null;
}

/** What creating a run takes: its pinned inputs and its partitions' time slices. */
export type NewPredictionRun = Pick<PredictionRun, 'runId' | 'model' | 'requestedRef' | 'version' | 'featureView' | 'windowStart' | 'windowEnd' | 'strategy' | 'commits'> & {
  workflowId?: string;
  workflowRunId?: string;
  partitions: Array<{ start: Date; end: Date; spineRows: number }>;
};

interface PredictionRunRow {
  run_id: string;
  model: string;
  requested_ref: string;
  model_version: number;
  feature_view: string;
  feature_view_version: number;
  window_start: Date;
  window_end: Date;
  strategy: PitPlan;
  status: PredictionRunStatus;
  spine_rows: number;
  rows: number;
  rows_rejected: number;
  workflow_id: string | null;
  workflow_run_id: string | null;
  error: string | null;
  created_at: Date;
  finished_at: Date | null;
}

export interface PartitionRow {
  run_id: string;
  partition: number;
  window_start: Date;
  window_end: Date;
  spine_rows: number;
  status: 'pending' | 'done';
  rows: number;
  rows_rejected: number;
  finished_at: Date | null;
}

interface CommitRow {
  run_id: string;
  feature_group: string;
  feature_group_version: number;
  commit_id: number;
}

export function toPartition(row: PartitionRow): PredictionPartition {
  return {
    runId: row.run_id,
    index: row.partition,
    start: row.window_start,
    end: row.window_end,
    spineRows: row.spine_rows,
    status: row.status,
    rows: row.rows,
    rowsRejected: row.rows_rejected,
    finishedAt: row.finished_at,
  };
}

async function toRun(knex: Knex, row: PredictionRunRow): Promise<PredictionRun> {
  const commits = await knex<CommitRow>('prediction_run_commits').where({ run_id: row.run_id }).orderBy(['feature_group', 'feature_group_version']);
  return {
    runId: row.run_id,
    model: row.model,
    requestedRef: row.requested_ref,
    version: row.model_version,
    featureView: { name: row.feature_view, version: row.feature_view_version },
    windowStart: row.window_start,
    windowEnd: row.window_end,
    strategy: row.strategy,
    status: row.status,
    spineRows: row.spine_rows,
    rows: row.rows,
    rowsRejected: row.rows_rejected,
    commits: commits.map((c) => ({ featureGroup: c.feature_group, version: c.feature_group_version, commitId: c.commit_id })),
    workflowId: row.workflow_id,
    workflowRunId: row.workflow_run_id,
    error: row.error,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
  };
}

export async function findPredictionRun(knex: Knex, runId: string): Promise<PredictionRun | undefined> {
  const row = await knex<PredictionRunRow>('prediction_runs').where({ run_id: runId }).first();
  return row ? toRun(knex, row) : undefined;
}

export async function getPredictionRun(knex: Knex, runId: string): Promise<PredictionRun> {
  const run = await findPredictionRun(knex, runId);
  if (!run) throw new FtiError(FailureType.NotFound, `prediction run ${runId} does not exist`);
  return run;
}

/**
 * Inserts the run, its commits and its partitions in one transaction. When the run
 * id exists already (a re-run, or a concurrent start), nothing is written and the
 * existing run comes back with `created: false`.
 */
export async function createPredictionRun(knex: Knex, run: NewPredictionRun): Promise<{ run: PredictionRun; created: boolean }> {
  return transaction(knex, async (trx) => {
    const inserted = await trx<PredictionRunRow>('prediction_runs')
      .insert({
        run_id: run.runId,
        model: run.model,
        requested_ref: run.requestedRef,
        model_version: run.version,
        feature_view: run.featureView.name,
        feature_view_version: run.featureView.version,
        window_start: run.windowStart,
        window_end: run.windowEnd,
        strategy: run.strategy,
        status: 'running',
        spine_rows: run.partitions.reduce((n, p) => n + p.spineRows, 0),
        workflow_id: run.workflowId ?? null,
        workflow_run_id: run.workflowRunId ?? null,
      })
      .onConflict('run_id')
      .ignore()
      .returning('*');
    const row = inserted[0];
    if (!row) return { run: await getPredictionRun(trx, run.runId), created: false };
    if (run.commits.length) {
      await trx('prediction_run_commits').insert(run.commits.map((c) => ({ run_id: run.runId, feature_group: c.featureGroup, feature_group_version: c.version, commit_id: c.commitId })));
    }
    await trx('prediction_run_partitions').insert(
      run.partitions.map((p, index) => ({ run_id: run.runId, partition: index, window_start: p.start, window_end: p.end, spine_rows: p.spineRows, status: 'pending' })),
    );
    return { run: await toRun(trx, row), created: true };
  });
}

/** A re-run of an unfinished run id: running again, under the new workflow. */
export async function resumePredictionRun(knex: Knex, runId: string, workflow: { workflowId?: string; workflowRunId?: string }): Promise<PredictionRun> {
  await knex<PredictionRunRow>('prediction_runs')
    .where({ run_id: runId })
    .whereNot({ status: 'completed' })
    .update({ status: 'running', error: null, workflow_id: workflow.workflowId ?? null, workflow_run_id: workflow.workflowRunId ?? null });
  return getPredictionRun(knex, runId);
}

export async function listPartitions(knex: Knex, runId: string): Promise<PredictionPartition[]> {
  const rows = await knex<PartitionRow>('prediction_run_partitions').where({ run_id: runId }).orderBy('partition');
  return rows.map(toPartition);
}

export async function getPartition(knex: Knex, runId: string, index: number): Promise<PredictionPartition> {
  const row = await knex<PartitionRow>('prediction_run_partitions').where({ run_id: runId, partition: index }).first();
  if (!row) throw new FtiError(FailureType.NotFound, `prediction run ${runId} has no partition ${index}`);
  return toPartition(row);
}

/** Marks the run completed with its totals; Conflict while a partition is not done. */
export async function completePredictionRun(knex: Knex, runId: string): Promise<PredictionRun> {
  return transaction(knex, async (trx) => {
    const run = await trx<PredictionRunRow>('prediction_runs').where({ run_id: runId }).forUpdate().first();
    if (!run) throw new FtiError(FailureType.NotFound, `prediction run ${runId} does not exist`);
    if (run.status === 'completed') return toRun(trx, run);
    const totals = (await trx('prediction_run_partitions')
      .where({ run_id: runId })
      .select(trx.raw(`count(*) filter (where status <> 'done')::int as pending, coalesce(sum(rows), 0)::bigint as rows, coalesce(sum(rows_rejected), 0)::bigint as rejected`))
      .first()) as { pending: number; rows: number; rejected: number };
    if (totals.pending > 0) throw new FtiError(FailureType.Conflict, `prediction run ${runId} still has ${totals.pending} partition(s) to score`);
    const [done] = await trx<PredictionRunRow>('prediction_runs')
      .where({ run_id: runId })
      .update({ status: 'completed', rows: totals.rows, rows_rejected: totals.rejected, error: null, finished_at: trx.fn.now() as unknown as Date })
      .returning('*');
    return toRun(trx, done as PredictionRunRow);
  });
}

/** Records why a run gave up. Its finished partitions stay; a re-run of the id completes it. */
export async function failPredictionRun(knex: Knex, runId: string, error: string): Promise<void> {
  await knex<PredictionRunRow>('prediction_runs')
    .where({ run_id: runId })
    .whereNot({ status: 'completed' })
    .update({ status: 'failed', error: error.slice(0, 10_000), finished_at: knex.fn.now() as unknown as Date });
}

/** Which prediction runs read this commit (lineage). */
export async function runsUsingCommit(knex: Knex, commit: FeatureGroupCommitRef): Promise<string[]> {
  return knex('prediction_run_commits')
    .where({ feature_group: commit.featureGroup, feature_group_version: commit.version, commit_id: commit.commitId })
    .orderBy('run_id')
    .pluck<string[]>('run_id');
}
