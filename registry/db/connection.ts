/**
 * The one way the project opens Postgres: a knex instance bound to a schema (the
 * registry, feature tables and predictions all live there; tests use a schema of
 * their own).
 */
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { assertIdentifier } from '../../core/names.ts';

// int8 (counts, bigserial ids) as JS numbers: they stay far below 2^53 here.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

export interface DbOptions {
  url: string;
  schema: string;
  poolMax?: number;
  /**
   * Connections the pool keeps open once made (default 0: idle ones close after 30 s).
   * The prediction server keeps its lookups' connections, so a request after a quiet
   * spell never waits for a new connection and a new plan of the lookup statement.
   */
  poolMin?: number;
  applicationName?: string;
  /** Session `statement_timeout` in ms (unset: the server's). */
  statementTimeoutMs?: number;
  /** Session `idle_in_transaction_session_timeout` in ms (unset: the server's). */
  idleInTransactionTimeoutMs?: number;
  /**
   * A pool whose statements are key lookups, each with one good plan whatever the keys
   * (the prediction server's). Every parameterised statement is planned once per
   * connection (`plan_cache_mode = force_generic_plan`), not again for each call's
   * values: Postgres re-planned the online lookup on every call, because a custom plan
   * always looks cheaper than the generic one, and planning it (about 0.2 ms) cost more
   * than running it. And an index probe is priced as the cached page read it is
   * (`random_page_cost = 1.1`, the usual setting for data in memory or on SSD, against
   * the default 4): with the default, the lookup scanned a windowed group's whole online
   * table (a few pages, a row per airport) on every call instead of probing its key.
   * Measured with pgbench on the flights lookup: 218 -> 138 us of CPU a call for the
   * second, 0.2 ms less Postgres CPU a request for the first (plans measured by EXPLAIN).
   */
  pointLookups?: boolean;
}

export function createKnex({ url, schema, poolMax = 10, poolMin = 0, applicationName = 'fti', statementTimeoutMs, idleInTransactionTimeoutMs, pointLookups }: DbOptions): Knex {
  assertIdentifier(schema, 'schema');
  return knexFactory({
    client: 'pg',
    connection: {
      connectionString: url,
      application_name: applicationName,
      ...(statementTimeoutMs !== undefined ? { statement_timeout: statementTimeoutMs } : {}),
      ...(idleInTransactionTimeoutMs !== undefined ? { idle_in_transaction_session_timeout: idleInTransactionTimeoutMs } : {}),
      // A startup parameter, like the timeouts: it holds on every connection the pool opens.
      ...(pointLookups ? { options: '-c plan_cache_mode=force_generic_plan -c random_page_cost=1.1' } : {}),
    },
    searchPath: [schema, 'public'],
    pool: { min: poolMin, max: poolMax },
  });
}

/**
 * The database and schema a createKnex instance opened, for a thread that opens a
 * pool of its own on them (with the same role: the URL carries its credentials).
 */
export function databaseOf(knex: Knex): { url: string; schema: string } {
  const config = knex.client.config as { connection?: { connectionString?: unknown }; searchPath?: unknown };
  const url = config.connection?.connectionString;
  const schema = Array.isArray(config.searchPath) ? config.searchPath[0] : undefined;
  if (typeof url !== 'string' || typeof schema !== 'string') throw new Error('databaseOf: this knex instance was not made by createKnex');
  return { url, schema };
}
