/**
 * Writing a commit's rows before it commits: COPY into the commit's own table
 * (invisible to readers until attached), and rejected rows into feature_rejects.
 * A partition's retry first clears what its earlier attempt wrote.
 */
import type { Knex } from 'knex';
import type pg from 'pg';
import type { FeatureReject } from '../../features/ingest.ts';
import { FailureType, FtiError } from '../../core/errors.ts';
import { cancelledWith, copyIn, id, ids, raw, sql, toText, transaction } from '../db/index.ts';
import { groupTables, type GroupShape } from './tables.ts';

/** COPYs binary COPY data (columns: the group's features, then _row_number and _available_at; features/staged-rows.ts writes it) into the commit's table. */
export async function copyIntoCommit(knex: Knex, shape: GroupShape, commitId: number, chunks: AsyncIterable<Buffer> | Iterable<Buffer>, signal?: AbortSignal): Promise<void> {
  const table = groupTables(shape.name, shape.version).commit(commitId);
  const columns = [...shape.columns.map((c) => c.name), '_row_number', '_available_at'];
  const client = (await knex.client.acquireConnection()) as pg.PoolClient;
  try {
    // Aborting ends the COPY from this side too (CopyFail), for a COPY waiting on its source.
    await copyIn(client, toText(knex, sql`copy ${id(table)} (${ids(columns)}) from stdin (format binary)`), () => chunks, signal);
  } finally {
    await knex.client.releaseConnection(client);
  }
}

export async function insertRejects(knex: Knex, commitId: number, rejects: FeatureReject[]): Promise<void> {
  if (rejects.length === 0) return;
  await knex('feature_rejects')
    .insert(rejects.map((r) => ({ commit_id: commitId, row_number: r.rowNumber, reasons: r.reasons, row: JSON.stringify(r.row) })))
    .onConflict(['commit_id', 'row_number'])
    .ignore();
}

/** Removes the rows an earlier attempt of a partition staged: row numbers in [rowStart, rowEnd), or all. */
export async function clearStagedRows(knex: Knex, shape: GroupShape, commitId: number, range?: { rowStart: number; rowEnd: number }): Promise<void> {
  const table = groupTables(shape.name, shape.version).commit(commitId);
  if (range) await raw(knex, sql`delete from ${id(table)} where _row_number >= ${range.rowStart} and _row_number < ${range.rowEnd}`);
  else await raw(knex, sql`truncate ${id(table)}`);
}

/**
 * Removes the rejects an earlier attempt of a partition recorded (same range). On its
 * own connection, committed at once, before the attempt's fenced transaction: rejects
 * are written beside the attempt's COPY, and a delete still open in that transaction
 * would make them wait on it (a zombie's late rejects are the same rows: ignored).
 */
export async function clearRejects(knex: Knex, commitId: number, range?: { rowStart: number; rowEnd: number }): Promise<void> {
  const query = knex('feature_rejects').where({ commit_id: commitId });
  if (range) query.andWhere('row_number', '>=', range.rowStart).andWhere('row_number', '<', range.rowEnd);
  await query.delete();
}

/** A commit's rejected rows, in source order. */
export async function listRejects(knex: Knex, commitId: number): Promise<FeatureReject[]> {
  const rows = await knex('feature_rejects').where({ commit_id: commitId }).orderBy('row_number');
  return rows.map(toFeatureReject);
}

export function toFeatureReject(r: { row_number: number; reasons: string[]; row: Record<string, unknown> }): FeatureReject {
  return { rowNumber: Number(r.row_number), reasons: r.reasons, row: r.row };
}

/**
 * Leases: transaction-level advisory locks on (hash of a name and the schema, a number).
 * Advisory locks are shared by every schema of the database while commit ids are numbered
 * per schema: without the schema, two deployments (or test files) writing commits of the
 * same id would take each other's leases, and a retry would end the other's attempt (or,
 * under another role, fail with "permission denied to terminate process").
 */
const LEASE_CLASS = `(hashtext(? || current_schema()) & 2147483647)`;
/** A commit's partition leases: one per partition. */
const partitionLease = (commitId: number) => `fti.partition:${commitId}@`;
/** A commit's "make visible" lease (number 0): one commit attempt at a time. */
const commitLease = (commitId: number) => `fti.commit:${commitId}@`;

/**
 * Takes a lease for the rest of `trx`, ending the session of an earlier holder (a zombie:
 * its worker stopped, or cut off and given up on by Temporal), whose transaction rolls back
 * whole. Bounded: a holder that cannot be ended (another role's session) makes this attempt
 * fail after 30 s, and Temporal retries it.
 */
async function takeLease(trx: Knex.Transaction, name: string, number: number): Promise<void> {
  const { ok } = ((await trx.raw(`select pg_try_advisory_xact_lock(${LEASE_CLASS}, ?) as ok`, [name, number])) as { rows: Array<{ ok: boolean }> }).rows[0] as { ok: boolean };
  if (ok) return;
  await endLeaseHolders(trx, name, number);
  await trx.raw(`select set_config('lock_timeout', '30s', true)`);
  await trx.raw(`select pg_advisory_xact_lock(${LEASE_CLASS}, ?)`, [name, number]);
  await trx.raw(`select set_config('lock_timeout', '0', true)`);
}

/** Ends every session (but this one) holding the lease `name` (number `number`, or any). */
async function endLeaseHolders(knex: Knex, name: string, number?: number): Promise<void> {
  await knex.raw(
    `select pg_terminate_backend(pid) from pg_locks
     where locktype = 'advisory' and granted and classid = ${LEASE_CLASS}::oid and objsubid = 2
       and (?::int is null or objid = ?::oid) and pid <> pg_backend_pid()`,
    [name, number ?? null, number ?? 0],
  );
}

/**
 * Ends every session that holds a partition lease of the commit (or of one partition
 * of it): attempts still writing it. A stalled COPY does not heartbeat, so it may
 * never hear a cancel; ended, its writes roll back and nothing waits behind it.
 */
export async function endPartitionAttempts(knex: Knex, commitId: number, partition?: number): Promise<void> {
  await endLeaseHolders(knex, partitionLease(commitId), partition);
}

/**
 * One attempt at one partition of a commit, fenced: its writes (clearing what an
 * earlier attempt staged, then its own rows) run in one transaction that holds the
 * partition's lease, a transaction-level advisory lock. An earlier attempt still
 * holding it is a zombie (its worker stopped, or lost its heartbeat and was given
 * up on): its session is terminated, which rolls its writes back, so two attempts
 * never write the same partition at once and a zombie can neither add to nor break
 * its successor. The commit must still be staging (a zombie that wakes after the
 * commit finds it committed and writes nothing). `signal` cancels the attempt: its
 * statement is cancelled in Postgres (pg_cancel_backend), so nothing waits on it.
 */
export async function stagePartition<T>(knex: Knex, commitId: number, partition: number, signal: AbortSignal | undefined, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return transaction(knex, async (trx) => {
    await takeLease(trx, partitionLease(commitId), partition);
    const commit = await trx('feature_commits').where({ id: commitId }).forShare().first('status');
    if (commit?.status !== 'staging') throw new FtiError(FailureType.Conflict, `commit ${commitId} is ${commit?.status ?? 'gone'}: partition ${partition} of it is no longer written (a stale attempt)`);
    if (signal?.aborted) throw new FtiError(FailureType.Conflict, `partition ${partition} of commit ${commitId} was cancelled`);
    return cancelledWith(knex, trx, signal, () => work(trx));
  });
}

/**
 * Takes the lease of a commit's "make visible" transaction (held to the end of `trx`),
 * ending an earlier attempt still holding it. Such a zombie sits idle in its transaction
 * holding the group's commit lock: without the fence this retry, and every later commit
 * of the group, would wait on it for as long as it stays stopped (the retry heartbeats
 * while it waits, so Temporal would give up only at its 60 m start-to-close).
 */
export async function fenceCommitAttempt(trx: Knex.Transaction, commitId: number): Promise<void> {
  await takeLease(trx, commitLease(commitId), 0);
}

/** Ends the session of an attempt holding the commit's "make visible" lease (its transaction rolls back). */
export async function endCommitAttempts(knex: Knex, commitId: number): Promise<void> {
  await endLeaseHolders(knex, commitLease(commitId), 0);
}
