/**
 * Streams a query's rows in fixed-size batches through a server-side cursor, so a
 * reader's memory does not grow with the result (sources, training batches,
 * batch inference). The cursor lives in its own read-only transaction on a
 * connection borrowed from the knex pool.
 *
 * Every caller reads the whole result, so the cursor is planned for all of it: by
 * default Postgres plans a cursor for its first 10% (cursor_tuple_fraction), which
 * turns the point-in-time join's hash joins into nested loops (27 s instead of 0.1 s
 * for a day of flights).
 */
import type { Knex } from 'knex';
import pg from 'pg';

export interface StreamOptions {
  /**
   * Leave timestamps as Postgres prints them (ISO 8601 text) instead of parsing them
   * into Dates: for rows whose times only travel on to a COPY.
   */
  timestampsAsText?: boolean;
}

const pgTypes = pg.types;
const TIMESTAMPS_AS_TEXT: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pgTypes.builtins.TIMESTAMPTZ || oid === pgTypes.builtins.TIMESTAMP ? (value: string) => value : pgTypes.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

export async function* streamQuery<Row>(knex: Knex, sql: string, params: unknown[] = [], batchSize = 10_000, options: StreamOptions = {}): AsyncGenerator<Row[]> {
  const client = (await knex.client.acquireConnection()) as pg.PoolClient;
  let open = false;
  try {
    await client.query('begin read only');
    open = true;
    await client.query(`set local cursor_tuple_fraction = 1.0; set local datestyle = 'ISO, MDY'`);
    await client.query(`declare fti_cursor no scroll cursor for ${sql}`, params);
    const fetch = `fetch forward ${Math.floor(batchSize)} from fti_cursor`;
    for (;;) {
      const result = await client.query<Row & pg.QueryResultRow>(options.timestampsAsText ? { text: fetch, types: TIMESTAMPS_AS_TEXT } : fetch);
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
