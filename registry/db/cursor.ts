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
   * Timestamps as microseconds since 1970 (exact, parsed from the ISO text Postgres
   * prints) instead of Dates, which keep milliseconds: for rows whose times only travel
   * on to a binary COPY.
   */
  timestampsAsMicros?: boolean;
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
const TIMESTAMPS_AS_MICROS: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pgTypes.builtins.TIMESTAMPTZ ? timestamptzMicros : pgTypes.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

/** Postgres' ISO output of a timestamptz (DateStyle ISO, any TimeZone): date, time, optional fraction, UTC offset. */
const TIMESTAMPTZ_TEXT = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$/;
/** Milliseconds in 400 Gregorian years (146,097 days): Date.UTC reads years 0–99 as 1900–1999. */
const FOUR_CENTURIES_MS = 146_097 * 86_400_000;

/** A timestamptz's ISO text as microseconds since 1970, every digit kept; anything else (BC, infinity) is refused. */
export function timestamptzMicros(text: string): number {
  const m = TIMESTAMPTZ_TEXT.exec(text);
  if (!m) throw new Error(`not a timestamp with time zone in ISO style that microseconds can hold: ${text}`);
  const [, y, mo, d, h, mi, s, fraction = '', sign, oh, om = '0', os = '0'] = m;
  const year = Number(y);
  const ms = Date.UTC(year < 100 ? year + 400 : year, Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) - (year < 100 ? FOUR_CENTURIES_MS : 0);
  const offsetSeconds = (sign === '-' ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os));
  return (ms - offsetSeconds * 1000) * 1000 + Number(fraction.padEnd(6, '0'));
}

function zonelessTypes(parse: (text: string) => unknown): pg.CustomTypesConfig {
  const zoneless = new Set<number>([pgTypes.builtins.TIMESTAMP, pgTypes.builtins.DATE]);
  return {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') => (zoneless.has(oid) ? parse : pgTypes.getTypeParser(oid, format))) as pg.CustomTypesConfig['getTypeParser'],
  };
}

export async function* streamQuery<Row>(knex: Knex, sql: string, params: unknown[] = [], batchSize = 10_000, options: StreamOptions = {}): AsyncGenerator<Row[]> {
  const [stream] = streamQueries<Row>(knex, [{ sql, params }], batchSize, options);
  if (stream) yield* stream;
}

/**
 * Several queries' rows, each through its own cursor, all in one read-only transaction
 * on one connection (sharedReadSession: one snapshot, one connection however many
 * queries): one stream per query, each pulled on its own; their FETCHes take turns on
 * the connection.
 */
export function streamQueries<Row>(knex: Knex, queries: Array<{ sql: string; params?: unknown[] }>, batchSize = 10_000, options: StreamOptions = {}): Array<AsyncGenerator<Row[]>> {
  const types = options.timestampsAsMicros ? TIMESTAMPS_AS_MICROS : options.zonelessTimestamp ? zonelessTypes(options.zonelessTimestamp) : undefined;
  return sharedReadSession(
    knex,
    queries.length,
    options.signal,
    async (client) => {
      // Every caller reads the whole result: plan the cursor for all of it.
      await client.query(extended(`select set_config('cursor_tuple_fraction', '1.0', true), set_config('datestyle', 'ISO, MDY', true)`));
      for (const [i, q] of queries.entries()) await client.query(extended(`declare fti_cursor_${i} no scroll cursor for ${q.sql}`, q.params ?? []));
    },
    async function* (client, i): AsyncGenerator<Row[]> {
      const fetch = extended(`fetch forward ${Math.floor(batchSize)} from fti_cursor_${i}`);
      for (;;) {
        const result = await client.query<Row & pg.QueryResultRow>(types ? { ...fetch, types } : fetch);
        if (result.rows.length === 0) break;
        yield result.rows;
        if (result.rows.length < batchSize) break;
      }
    },
  );
}

/** A statement over the extended protocol, even without parameters (see the file's comment). */
function extended(text: string, values: unknown[] = []): pg.QueryConfig {
  // `queryMode` is node-postgres' (≥ 8.11); @types/pg does not list it yet.
  const config: pg.QueryConfig & { queryMode: 'extended' } = { text, values, queryMode: 'extended' };
  return config;
}

/**
 * `count` streams that read in one read-only transaction on one pooled connection (one
 * snapshot, one connection however many streams): the first to start begins it and runs
 * `prepare`; the connection's queue makes their statements take turns. The transaction
 * ends and the connection goes back once every stream has finished or been closed (an
 * error in one ends the others). Start every stream (call next() once) before closing
 * any: a generator closed before it started never runs its cleanup.
 */
export function sharedReadSession<Row>(
  knex: Knex,
  count: number,
  signal: AbortSignal | undefined,
  prepare: (client: pg.PoolClient) => Promise<void>,
  read: (client: pg.PoolClient, index: number) => AsyncGenerator<Row[]>,
): Array<AsyncGenerator<Row[]>> {
  let session: Promise<pg.PoolClient> | undefined;
  let open = false;
  let release = () => {};
  let active = count;

  const begin = async (): Promise<pg.PoolClient> => {
    signal?.throwIfAborted();
    const client = (await knex.client.acquireConnection()) as pg.PoolClient;
    try {
      release = cancelOnAbort(knex, (client as pg.PoolClient & { processID: number }).processID, signal);
      await client.query('begin read only');
      open = true;
      // A sequential scan reads from the table's first page, not from where another scan of it is
      // (synchronize_seqscans): a table stored in an order (a training dataset's) is read in it.
      await client.query(extended(`select set_config('synchronize_seqscans', 'off', true)`));
      await prepare(client);
      return client;
    } catch (err) {
      release();
      if (open) await client.query('rollback').catch(() => {});
      open = false;
      await knex.client.releaseConnection(client);
      throw err;
    }
  };
  /** The last stream to finish ends the transaction (rolled back if any stream failed or was abandoned) and gives the connection back. */
  const end = async (client: pg.PoolClient | undefined, ok: boolean) => {
    active -= 1;
    if (!ok && client && open) {
      open = false;
      await client.query('rollback').catch(() => {});
    }
    if (active > 0 || !client) return;
    release();
    if (open) {
      open = false;
      await client.query('commit').catch(() => {});
    }
    await knex.client.releaseConnection(client);
  };

  return Array.from({ length: count }, async function* (_, i): AsyncGenerator<Row[]> {
    let client: pg.PoolClient | undefined;
    let ok = false;
    try {
      session ??= begin();
      client = await session;
      yield* read(client, i);
      ok = true;
    } finally {
      // An abandoned iteration (break, error) lands here with the transaction still open. A
      // session that failed to begin gave its connection back already.
      await end(client, ok);
    }
  });
}
