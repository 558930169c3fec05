/** Applies and rolls back the migrations in ./migrations, in the given schema. */
import type { Knex } from 'knex';
import { assertIdentifier } from '../../core/names.ts';
import { migrationSource } from './migrations/index.ts';

/** Creates the schema if needed and applies every pending migration. Returns their names. */
export async function migrate(knex: Knex, schema: string): Promise<string[]> {
  assertIdentifier(schema, 'schema');
  // Provisioned schemas exist already (owned by the owner role, which may not create schemas).
  const exists = (await knex.raw('select 1 from pg_namespace where nspname = ?', [schema])) as { rows: unknown[] };
  if (exists.rows.length === 0) await knex.raw('create schema ??', [schema]);
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
