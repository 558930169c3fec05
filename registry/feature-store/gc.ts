/**
 * Garbage collection of commit attempts that nothing will finish. A feature run whose
 * workflow was terminated (a cancelled one aborts its attempt itself) leaves its
 * commit row in 'staging' and its table fg_<name>_v<version>__c<id> behind for ever.
 * `reapStagingCommits` fails such an attempt the way abortCommit does (status
 * 'failed', the reason in `error`, the table dropped, in one transaction) once it is
 * older than the retention and the workflow run that began it is closed.
 *
 * Committed commits are never touched: only 'staging' rows are candidates, a commit
 * in progress holds its row's lock (commitStaged locks it FOR UPDATE) and is skipped,
 * and a table that is a partition of the offline table is never dropped.
 */
import type { Knex } from 'knex';
import { retentionMs, type Retention } from '../../core/config.ts';
import { isLockNotAvailable, transaction } from '../db/index.ts';
import { abortCommit } from './commit.ts';
import type { FeatureCommitRow } from './commits.ts';
import { listFeatureGroups, type FeatureGroupRecord } from './groups.ts';
import { groupTables } from './tables.ts';

/** How long a reap waits for a table someone is still using before it leaves it for the next run. */
const LOCK_TIMEOUT = '10s';

export interface StagingGcOptions {
  /** Attempts begun at least this long ago are candidates ('0': any). */
  retention: Retention;
  /** Report what would be reaped; change nothing. */
  dryRun?: boolean;
  /**
   * Whether the workflow run that began an attempt is still running: such an attempt is
   * kept whatever its age. Without it (or for an attempt that names no workflow) age
   * alone decides.
   */
  isRunning?: (run: { workflowId: string; runId: string | null }) => Promise<boolean>;
  /** Called after each attempt reaped (for heartbeats). */
  onReaped?: (reaped: number) => void;
}

export interface StagingCommitRef {
  commitId: number;
  featureGroup: string;
  version: number;
  /** The attempt's table (dropped, or to be dropped). */
  table: string;
  workflowId: string | null;
  runId: string | null;
  createdAt: Date;
}

export interface ReapedCommit extends StagingCommitRef {
  /** Whether the table was there (an attempt that failed before creating it has none). */
  tableExisted: boolean;
}

export interface KeptCommit extends StagingCommitRef {
  reason: string;
}

export interface StagingGcResult {
  /** Failed with the reap reason and their tables dropped (with dryRun: what would be). */
  reaped: ReapedCommit[];
  /** Old enough, but left alone, and why (their run still goes, a commit of them is in progress…). */
  kept: KeptCommit[];
}

interface CandidateRow {
  id: string | number;
  feature_group_id: number;
  workflow_id: string | null;
  run_id: string | null;
  created_at: Date;
}

/** The `error` a reaped attempt gets. */
export function reapReason(retention: Retention, run: { workflowId: string | null; checked: boolean }): string {
  const why = !run.workflowId ? 'it names no workflow run' : run.checked ? `its workflow run ${run.workflowId} is closed` : `its workflow run ${run.workflowId} was not checked`;
  return `reaped by fti gc: staging older than the retention (${retention}), ${why}; nothing will commit it`;
}

export async function reapStagingCommits(knex: Knex, options: StagingGcOptions): Promise<StagingGcResult> {
  const candidates = (await knex.raw(
    `select id, feature_group_id, workflow_id, run_id, created_at from feature_commits
     where status = 'staging' and created_at < now() - (? * interval '1 millisecond') order by id`,
    [retentionMs(options.retention)],
  )) as { rows: CandidateRow[] };
  const result: StagingGcResult = { reaped: [], kept: [] };
  if (candidates.rows.length === 0) return result;
  const groups = new Map((await listFeatureGroups(knex)).map((g) => [g.id, g]));

  for (const row of candidates.rows) {
    const group = groups.get(row.feature_group_id) as FeatureGroupRecord;
    const commitId = Number(row.id);
    const ref: StagingCommitRef = {
      commitId,
      featureGroup: group.name,
      version: group.version,
      table: groupTables(group.name, group.version).commit(commitId),
      workflowId: row.workflow_id,
      runId: row.run_id,
      createdAt: row.created_at,
    };
    if (row.workflow_id && options.isRunning && (await options.isRunning({ workflowId: row.workflow_id, runId: row.run_id }))) {
      result.kept.push({ ...ref, reason: `its workflow run ${row.workflow_id}${row.run_id ? ` (${row.run_id})` : ''} is still running` });
      continue;
    }
    const reason = reapReason(options.retention, { workflowId: row.workflow_id, checked: options.isRunning !== undefined });
    const outcome = options.dryRun ? await inspect(knex, ref.table) : await reapOne(knex, group, ref, reason);
    if (!outcome.reaped) result.kept.push({ ...ref, reason: outcome.kept });
    else {
      result.reaped.push({ ...ref, tableExisted: outcome.tableExisted });
      options.onReaped?.(result.reaped.length);
    }
  }
  return result;
}

type Outcome = { reaped: false; kept: string } | { reaped: true; tableExisted: boolean };

/** What a reap of the attempt would find, without changing anything. */
async function inspect(knex: Knex, table: string): Promise<Outcome> {
  const state = await tableState(knex, table);
  if (state.partition) return { reaped: false, kept: `${table} is a partition of the offline table` };
  return { reaped: true, tableExisted: state.exists };
}

async function reapOne(knex: Knex, group: FeatureGroupRecord, ref: StagingCommitRef, reason: string): Promise<Outcome> {
  try {
    return await transaction(knex, async (trx): Promise<Outcome> => {
      await trx.raw(`select set_config('lock_timeout', ?, true)`, [LOCK_TIMEOUT]);
      // A commit of this attempt in progress holds the row: leave it to finish.
      const current = await trx<FeatureCommitRow>('feature_commits').select('status').where({ id: ref.commitId }).forUpdate().skipLocked().first();
      if (!current) return { reaped: false, kept: 'a commit of it is in progress' };
      if (current.status !== 'staging') return { reaped: false, kept: `it became ${current.status} meanwhile` };
      const state = await tableState(trx, ref.table);
      if (state.partition) return { reaped: false, kept: `${ref.table} is a partition of the offline table` };
      await abortCommit(trx, group, ref.commitId, reason);
      return { reaped: true, tableExisted: state.exists };
    });
  } catch (err) {
    // Its table is still in use (a writer of a run that is gone has not stopped yet): the next gc gets it.
    if (isLockNotAvailable(err)) return { reaped: false, kept: `${ref.table} is in use` };
    throw err;
  }
}

/** Whether a table of the current schema exists, and whether it is a partition. */
async function tableState(knex: Knex, table: string): Promise<{ exists: boolean; partition: boolean }> {
  const found = (await knex.raw(
    `select c.relispartition as partition from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = current_schema() and c.relname = ?`,
    [table],
  )) as { rows: Array<{ partition: boolean }> };
  const row = found.rows[0];
  return { exists: row !== undefined, partition: row?.partition ?? false };
}
