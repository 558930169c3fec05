/** Applies and rolls back the migrations in ./migrations, in the given schema. */
import type { Knex } from 'knex';
import { assertIdentifier } from '../../core/names.ts';
import { migrationSource } from './migrations/index.ts';

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
