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
   * Plan every parameterised statement once per connection (`plan_cache_mode =
   * force_generic_plan`) instead of again for each call's values. For a pool whose
   * statements are key lookups with one good plan whatever the keys (the prediction
   * server's): Postgres otherwise re-plans the online lookup on every call, because a
   * custom plan always looks cheaper than the generic one, and the planning (about
   * 0.2 ms) costs more than running it.
   */
  genericPlans?: boolean;
}

export function createKnex({ url, schema, poolMax = 10, poolMin = 0, applicationName = 'fti', statementTimeoutMs, idleInTransactionTimeoutMs, genericPlans }: DbOptions): Knex {
  assertIdentifier(schema, 'schema');
  return knexFactory({
    client: 'pg',
    connection: {
      connectionString: url,
      application_name: applicationName,
      ...(statementTimeoutMs !== undefined ? { statement_timeout: statementTimeoutMs } : {}),
      ...(idleInTransactionTimeoutMs !== undefined ? { idle_in_transaction_session_timeout: idleInTransactionTimeoutMs } : {}),
      // A startup parameter, like the timeouts: it holds on every connection the pool opens.
      ...(genericPlans ? { options: '-c plan_cache_mode=force_generic_plan' } : {}),
    },
    searchPath: [schema, 'public'],
    pool: { min: poolMin, max: poolMax },
  });
}
