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
 *
 * Every statement goes over Postgres' extended protocol (node-postgres `queryMode:
 * 'extended'`), even without parameters: a text holding several statements is refused
 * ("cannot insert multiple commands into a prepared statement") instead of run one after
 * the other, so a definition's query such as `select …; commit; create table …` cannot end
 * the read-only transaction and run what follows outside it. DECLARE accepts only a SELECT
 * or VALUES, and a read-only transaction refuses writes and a switch to read-write.
 */
import type { Knex } from 'knex';
import pg from 'pg';
import { cancelOnAbort } from './transaction.ts';

export interface StreamOptions {
  /**
   * Leave timestamps as Postgres prints them (ISO 8601 text) instead of parsing them
   * into Dates: for rows whose times only travel on to a COPY.
   */
  timestampsAsText?: boolean;
  /**
   * Parses `timestamp without time zone` and `date` values (their text, as Postgres prints
   * them in ISO style) instead of node-postgres' default, which reads them in the process's
   * local zone: e.g. as wall-clock times of a definition's zone.
   */
  zonelessTimestamp?: (text: string) => unknown;
  /** Cancels the cursor's statement in Postgres (a FETCH waiting on a lock or a long plan). */
  signal?: AbortSignal;
}

const pgTypes = pg.types;
const TIMESTAMPS_AS_TEXT: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pgTypes.builtins.TIMESTAMPTZ || oid === pgTypes.builtins.TIMESTAMP ? (value: string) => value : pgTypes.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

function zonelessTypes(parse: (text: string) => unknown): pg.CustomTypesConfig {
  const zoneless = new Set<number>([pgTypes.builtins.TIMESTAMP, pgTypes.builtins.DATE]);
  return {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') => (zoneless.has(oid) ? parse : pgTypes.getTypeParser(oid, format))) as pg.CustomTypesConfig['getTypeParser'],
  };
}

export async function* streamQuery<Row>(knex: Knex, sql: string, params: unknown[] = [], batchSize = 10_000, options: StreamOptions = {}): AsyncGenerator<Row[]> {
  const client = (await knex.client.acquireConnection()) as pg.PoolClient;
  const extended = (text: string, values: unknown[] = []): pg.QueryConfig => {
    // `queryMode` is node-postgres' (≥ 8.11); @types/pg does not list it yet.
    const config: pg.QueryConfig & { queryMode: 'extended' } = { text, values, queryMode: 'extended' };
    return config;
  };
  let open = false;
  let release = () => {};
  try {
    options.signal?.throwIfAborted();
    release = cancelOnAbort(knex, (client as pg.PoolClient & { processID: number }).processID, options.signal);
    await client.query('begin read only');
    open = true;
    // A sequential scan reads from the table's first page, not from where another scan of it is
    // (synchronize_seqscans): a table stored in an order (a training dataset's) is read in it.
    await client.query(extended(`select set_config('cursor_tuple_fraction', '1.0', true), set_config('datestyle', 'ISO, MDY', true), set_config('synchronize_seqscans', 'off', true)`));
    await client.query(extended(`declare fti_cursor no scroll cursor for ${sql}`, params));
    const fetch = extended(`fetch forward ${Math.floor(batchSize)} from fti_cursor`);
    const types = options.timestampsAsText ? TIMESTAMPS_AS_TEXT : options.zonelessTimestamp ? zonelessTypes(options.zonelessTimestamp) : undefined;
    for (;;) {
      const result = await client.query<Row & pg.QueryResultRow>(types ? { ...fetch, types } : fetch);
      if (result.rows.length === 0) break;
      yield result.rows;
      if (result.rows.length < batchSize) break;
    }
    await client.query('commit');
    open = false;
  } finally {
    release();
    // An abandoned iteration (break, error) lands here with the transaction still open.
    if (open) await client.query('rollback').catch(() => {});
    await knex.client.releaseConnection(client);
  }
}
