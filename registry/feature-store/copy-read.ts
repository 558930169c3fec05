/**
 * A read-only query's rows by binary COPY, a tuple at a time: how the stream plan
 * (pit-stream.ts) reads spines and joined groups, and column segments (segments.ts)
 * read a partition.
 */
import type { Knex } from 'knex';
import type pg from 'pg';
import { binaryCopyOut, cancelOnAbort, toInlined, type BinaryTuple, type Sql } from '../db/index.ts';

/** Runs `query` as a binary COPY TO on a pooled connection, a tuple at a time. */
export async function copyOut(knex: Knex, query: Sql, signal: AbortSignal | undefined, onTuple: (t: BinaryTuple) => void): Promise<number> {
  signal?.throwIfAborted();
  const client = (await knex.client.acquireConnection()) as pg.PoolClient & { processID: number };
  const release = cancelOnAbort(knex, client.processID, signal);
  try {
    // Sorts in memory, and one core a query: the caller runs several side by side.
    await client.query(`begin read only; select set_config('work_mem', '256MB', true), set_config('max_parallel_workers_per_gather', '0', true)`);
    const count = await binaryCopyOut(client, `copy (${toInlined(knex, query)}) to stdout (format binary)`, onTuple);
    await client.query('commit');
    return count;
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    release();
    await knex.client.releaseConnection(client);
  }
}

