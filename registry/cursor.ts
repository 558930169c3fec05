/**
 * Streams a query's rows in fixed-size batches through a server-side cursor, so a
 * reader's memory does not grow with the result (sources, training batches,
 * batch inference). The cursor lives in its own read-only transaction on a
 * connection borrowed from the knex pool.
 */
import type { Knex } from 'knex';
import type pg from 'pg';

export async function* streamQuery<Row>(knex: Knex, sql: string, params: unknown[] = [], batchSize = 10_000): AsyncGenerator<Row[]> {
  const client = (await knex.client.acquireConnection()) as pg.PoolClient;
  let open = false;
  try {
    await client.query('begin read only');
    open = true;
    await client.query(`declare fti_cursor no scroll cursor for ${sql}`, params);
    for (;;) {
      const result = await client.query<Row & pg.QueryResultRow>(`fetch forward ${batchSize} from fti_cursor`);
      if (result.rows.length === 0) break;
      yield result.rows;
      if (result.rows.length < batchSize) break;
    }
    await client.query('commit');
    open = false;
  } finally {
    // An abandoned iteration (break, error) lands here with the transaction still open.
    if (open) await client.query('rollback').catch(() => {});
    await knex.client.releaseConnection(client);
  }
}
