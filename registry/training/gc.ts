/**
 * Garbage collection of training datasets (`fti gc`). Every dataset keeps a table of
 * its own, td_<id>, for ever; a dataset no model version was registered from (its
 * training run failed, was cancelled, or was never registered) is dead weight once it
 * is older than the retention. `reapDatasets` drops such tables and marks their rows
 * 'reaped' (the row and its lineage stay, so reading the dataset says what happened).
 * A dataset a model version names (model_versions.training_dataset_id) is never reaped,
 * whatever its age: promotion and lineage read it.
 *
 * It also drops the join's scratch tables, td_joining_*, that a build leaves when its
 * worker dies mid-build (they are normally dropped at the end of the build). Postgres
 * does not record when a table was made, so gc stamps each one it finds with a comment
 * ("fti gc: first seen at …") and drops it once that is older than the retention
 * (retention 0: at once). Either happens only when the caller says that no dataset can
 * be being built (no training pipeline runs), and a drop never while a session holds a
 * lock on the table.
 */
import type { Knex } from 'knex';
import { retentionMs, type Retention } from '../../core/config.ts';
import { id, isLockNotAvailable, kw, pgErrorCode, raw, sql, transaction } from '../db/index.ts';
import { datasetTable } from './datasets.ts';

const UNDEFINED_TABLE = '42P01';
/** How long a reap waits for a table (or a model registration) before it leaves the dataset for the next run. */
const LOCK_TIMEOUT = '10s';
const DATASET_TABLE = /^td_[0-9]+$/;
const JOINING_TABLE = /^td_joining_[0-9a-f]+$/;
const SEEN = 'fti gc: first seen at ';

export interface DatasetGcOptions {
  /** Datasets made at least this long ago are candidates ('0': any). */
  retention: Retention;
  /** Report what would be reaped; change nothing. */
  dryRun?: boolean;
  /**
   * Whether a workflow (its latest run) is running: a dataset whose building workflow
   * still runs is kept. Without it age alone decides.
   */
  isRunning?: (workflowId: string) => Promise<boolean>;
  /** Datasets running work was handed (a training run on an existing dataset): kept. */
  inUse?: readonly number[];
  /**
   * False when no dataset can be being built now (no training pipeline runs): only then
   * are td_joining_* tables stamped or dropped. Undefined or true: they are left alone.
   */
  buildsRunning?: boolean;
  /** Called after each dataset or table reaped (for heartbeats). */
  onReaped?: (reaped: number) => void;
}

export interface DatasetGcRef {
  trainingDatasetId: number;
  featureView: { name: string; version: number };
  /** Its status before it was reaped. */
  status: string;
  /** td_<id> (dropped, or to be dropped). */
  table: string;
  workflowId: string | null;
  createdAt: Date;
}

export interface ReapedDataset extends DatasetGcRef {
  /** Whether the table was there (a failed build may have left none). */
  tableExisted: boolean;
}

export interface KeptDataset extends DatasetGcRef {
  reason: string;
}

export interface DatasetGcResult {
  /** Marked 'reaped' and their tables dropped (with dryRun: what would be). */
  reaped: ReapedDataset[];
  /** Old and unused by any model version, but left alone, and why. */
  kept: KeptDataset[];
  /** td_joining_* scratch tables dropped (with dryRun: that would be). */
  joiningTables: string[];
  /** td_joining_* tables seen for the first time now (stamped): a gc after the retention drops them. */
  joiningNoticed: string[];
  /** Why td_joining_* tables were left alone, when they were. */
  joiningKept?: string;
}

interface CandidateRow {
  id: string | number;
  status: string;
  table_name: string | null;
  workflow_id: string | null;
  created_at: Date;
  view_name: string;
  view_version: number;
}

export async function reapDatasets(knex: Knex, options: DatasetGcOptions): Promise<DatasetGcResult> {
  const result: DatasetGcResult = { reaped: [], kept: [], joiningTables: [], joiningNoticed: [] };
  const inUse = new Set(options.inUse ?? []);
  const candidates = (await knex.raw(
    `select d.id, d.status, d.table_name, d.workflow_id, d.created_at, v.name as view_name, v.version as view_version
     from training_datasets d join feature_views v on v.id = d.feature_view_id
     where d.status <> 'reaped' and d.created_at < now() - (? * interval '1 millisecond')
       and not exists (select 1 from model_versions m where m.training_dataset_id = d.id)
     order by d.id`,
    [retentionMs(options.retention)],
  )) as { rows: CandidateRow[] };

  for (const row of candidates.rows) {
    const datasetId = Number(row.id);
    const ref: DatasetGcRef = {
      trainingDatasetId: datasetId,
      featureView: { name: row.view_name, version: row.view_version },
      status: row.status,
      // Only a name of the dataset's own form is ever dropped.
      table: row.table_name && DATASET_TABLE.test(row.table_name) ? row.table_name : datasetTable(datasetId),
      workflowId: row.workflow_id,
      createdAt: row.created_at,
    };
    if (inUse.has(datasetId)) {
      result.kept.push({ ...ref, reason: 'a running training pipeline was handed it' });
      continue;
    }
    if (row.workflow_id && options.isRunning && (await options.isRunning(row.workflow_id))) {
      result.kept.push({ ...ref, reason: `the workflow that built it, ${row.workflow_id}, is still running` });
      continue;
    }
    const outcome: Outcome = options.dryRun ? { reaped: true, tableExisted: await tableExists(knex, ref.table) } : await reapOne(knex, ref);
    if (!outcome.reaped) result.kept.push({ ...ref, reason: outcome.kept });
    else {
      result.reaped.push({ ...ref, tableExisted: outcome.tableExisted });
      options.onReaped?.(result.reaped.length);
    }
  }

  if (options.buildsRunning !== false) {
    result.joiningKept = options.buildsRunning ? 'a training pipeline is running: a dataset may be being built' : 'not known whether a dataset is being built';
    return result;
  }
  const retention = retentionMs(options.retention);
  for (const table of await joiningTables(knex)) {
    const old = retention === 0 || (table.seenAt !== undefined && table.now.getTime() - table.seenAt.getTime() >= retention);
    if (!old) {
      if (table.seenAt === undefined && !options.dryRun && (await stampSeen(knex, table.name, table.now))) result.joiningNoticed.push(table.name);
      continue;
    }
    if (options.dryRun || (await dropUnlessLocked(knex, table.name))) {
      result.joiningTables.push(table.name);
      options.onReaped?.(result.reaped.length + result.joiningTables.length);
    }
  }
  return result;
}

type Outcome = { reaped: false; kept: string } | { reaped: true; tableExisted: boolean };

async function reapOne(knex: Knex, ref: DatasetGcRef): Promise<Outcome> {
  try {
    return await transaction(knex, async (trx): Promise<Outcome> => {
      await trx.raw(`select set_config('lock_timeout', ?, true)`, [LOCK_TIMEOUT]);
      // No model version may be registered from it between the check and the drop: a
      // registration in flight finishes first (and is seen below), a new one waits for this.
      await trx.raw('lock table model_versions in share mode');
      const current = (await trx('training_datasets').select('status').where({ id: ref.trainingDatasetId }).forUpdate().first()) as { status: string } | undefined;
      if (!current || current.status === 'reaped') return { reaped: false, kept: 'it was reaped meanwhile' };
      const used = await trx('model_versions').select('id').where({ training_dataset_id: ref.trainingDatasetId }).first();
      if (used) return { reaped: false, kept: 'a model version was registered from it meanwhile' };
      const existed = await tableExists(trx, ref.table);
      await raw(trx, sql`drop table if exists ${id(ref.table)}`);
      await trx('training_datasets').where({ id: ref.trainingDatasetId }).update({ status: 'reaped', reaped_at: trx.fn.now() });
      return { reaped: true, tableExisted: existed };
    });
  } catch (err) {
    // Someone still reads it (or registers a model): the next gc gets it.
    if (isLockNotAvailable(err)) return { reaped: false, kept: `${ref.table} (or model_versions) is in use` };
    throw err;
  }
}

/** The join's scratch tables in the current schema, with when gc first saw each (if it did) and the database's time. */
async function joiningTables(knex: Knex): Promise<Array<{ name: string; seenAt: Date | undefined; now: Date }>> {
  const found = (await knex.raw(
    `select c.relname as name, obj_description(c.oid, 'pg_class') as note, now() as now from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = current_schema() and c.relkind = 'r' and starts_with(c.relname, 'td_joining_') order by 1`,
  )) as { rows: Array<{ name: string; note: string | null; now: Date }> };
  return found.rows
    .filter((r) => JOINING_TABLE.test(r.name))
    .map((r) => {
      const seen = r.note?.startsWith(SEEN) ? Date.parse(r.note.slice(SEEN.length)) : NaN;
      return { name: r.name, seenAt: Number.isNaN(seen) ? undefined : new Date(seen), now: r.now };
    });
}

/** Stamps a table with the time gc first saw it (COMMENT takes no bind parameters: the text is an ISO time we made). */
async function stampSeen(knex: Knex, table: string, now: Date): Promise<boolean> {
  try {
    await raw(knex, sql`comment on table ${id(table)} is ${kw(`'${SEEN}${now.toISOString()}'`)}`);
    return true;
  } catch (err) {
    // Gone meanwhile (its build finished and dropped it).
    if (pgErrorCode(err) === UNDEFINED_TABLE) return false;
    throw err;
  }
}

/** Drops a table unless a session holds a lock on it now (a build between statements holds none: see buildsRunning). */
async function dropUnlessLocked(knex: Knex, table: string): Promise<boolean> {
  try {
    await transaction(knex, async (trx) => {
      await raw(trx, sql`lock table ${id(table)} in access exclusive mode nowait`);
      await raw(trx, sql`drop table ${id(table)}`);
    });
    return true;
  } catch (err) {
    if (isLockNotAvailable(err)) return false;
    // Gone meanwhile (its build finished and dropped it).
    if (pgErrorCode(err) === UNDEFINED_TABLE) return false;
    throw err;
  }
}

async function tableExists(knex: Knex, table: string): Promise<boolean> {
  const found = (await knex.raw(
    `select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = current_schema() and c.relname = ?`,
    [table],
  )) as { rows: unknown[] };
  return found.rows.length > 0;
}
