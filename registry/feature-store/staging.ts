/**
 * Writing a commit's rows before it commits: COPY into the commit's own table
 * (invisible to readers until attached), and rejected rows into feature_rejects.
 * A partition's retry first clears what its earlier attempt wrote.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Knex } from 'knex';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { FeatureReject } from '../../features/ingest.ts';
import { id, ids, raw, sql, toText } from '../db/index.ts';
import { groupTables, type GroupShape } from './tables.ts';

/** COPYs text-format lines (columns: the group's features, then _row_number and _available_at) into the commit's table. */
export async function copyIntoCommit(knex: Knex, shape: GroupShape, commitId: number, chunks: AsyncIterable<string>): Promise<void> {
  const table = groupTables(shape.name, shape.version).commit(commitId);
  const columns = [...shape.columns.map((c) => c.name), '_row_number', '_available_at'];
  const client = (await knex.client.acquireConnection()) as pg.PoolClient;
  try {
    const copy = client.query(copyFrom(toText(knex, sql`copy ${id(table)} (${ids(columns)}) from stdin`)));
    await pipeline(Readable.from(chunks), copy);
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

/** Removes what an earlier attempt of a partition wrote: rows with numbers in [rowStart, rowEnd), or all. */
export async function clearStaged(knex: Knex, shape: GroupShape, commitId: number, range?: { rowStart: number; rowEnd: number }): Promise<void> {
  const table = groupTables(shape.name, shape.version).commit(commitId);
  if (range) {
    await raw(knex, sql`delete from ${id(table)} where _row_number >= ${range.rowStart} and _row_number < ${range.rowEnd}`);
    await knex('feature_rejects').where({ commit_id: commitId }).andWhere('row_number', '>=', range.rowStart).andWhere('row_number', '<', range.rowEnd).delete();
  } else {
    await raw(knex, sql`truncate ${id(table)}`);
    await knex('feature_rejects').where({ commit_id: commitId }).delete();
  }
}

/** A commit's rejected rows, in source order. */
export async function listRejects(knex: Knex, commitId: number): Promise<FeatureReject[]> {
  const rows = await knex('feature_rejects').where({ commit_id: commitId }).orderBy('row_number');
  return rows.map(toFeatureReject);
}

export function toFeatureReject(r: { row_number: number; reasons: string[]; row: Record<string, unknown> }): FeatureReject {
  return { rowNumber: Number(r.row_number), reasons: r.reasons, row: r.row };
}
