/**
 * The one way the project opens Postgres: a knex instance bound to a schema (the
 * registry, feature tables and predictions all live there; tests use a schema of
 * their own). SQL lives in registry/; everything else calls typed methods.
 */
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { assertIdentifier } from '../core/names.ts';
import { migrationSource } from './migrations/index.ts';

// int8 (counts, bigserial ids) as JS numbers: they stay far below 2^53 here.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

export interface DbOptions {
  url: string;
  schema: string;
  poolMax?: number;
  applicationName?: string;
}

export function createKnex({ url, schema, poolMax = 10, applicationName = 'fti' }: DbOptions): Knex {
  assertIdentifier(schema, 'schema');
  return knexFactory({
    client: 'pg',
    connection: { connectionString: url, application_name: applicationName },
    searchPath: [schema, 'public'],
    pool: { min: 0, max: poolMax },
  });
}

/** Creates the schema if needed and applies every pending migration. Returns their names. */
export async function migrate(knex: Knex, schema: string): Promise<string[]> {
  assertIdentifier(schema, 'schema');
  await knex.raw('create schema if not exists ??', [schema]);
  const [, applied] = (await knex.migrate.latest({
    migrationSource,
    schemaName: schema,
    tableName: 'knex_migrations',
  })) as [number, string[]];
  return applied;
}

export async function rollbackAll(knex: Knex, schema: string): Promise<void> {
  await knex.migrate.rollback({ migrationSource, schemaName: schema, tableName: 'knex_migrations' }, true);
}

/** Runs `fn` in a transaction, or inside `knex` when it already is one. */
export function transaction<T>(knex: Knex, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  if (knex.isTransaction) return fn(knex as Knex.Transaction);
  return knex.transaction(fn);
}
