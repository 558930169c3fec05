/**
 * Least privilege in Postgres: three login roles per store schema, each with the
 * rights its processes need and no more.
 *
 *   <schema>_owner    owns the schema and the registry tables; runs migrations (DDL)
 *   <schema>_worker   workers and the CLI: DML on the registry tables; CREATE in the
 *                     schema for the feature, commit and dataset tables it writes (it
 *                     owns only those); no superuser, no pg_read_server_files, no
 *                     COPY … FROM PROGRAM, nothing in other schemas
 *   <schema>_serving  the prediction server: SELECT on the registry tables it reads and
 *                     on online feature tables; it writes one thing: INSERT on skew_log
 *                     (what it served, sampled, for skew checks) and USAGE on that
 *                     table's id sequence (20261210000000_skew_log), nothing else: it
 *                     cannot read the log back, change or delete a row of it
 *
 * `provisionRoles` runs once per schema as an administrator (the embedded cluster's
 * superuser, or FTI_ADMIN_DATABASE_URL for `fti migrate`); the grants on tables are
 * made by the owner in a migration (20261130000000_least_privilege) and, for the
 * online tables the worker creates, when it creates them.
 */
import type { Knex } from 'knex';
import { DB_ROLES, roleName, type DbRole } from '../../core/db-roles.ts';

/**
 * Creates (or updates the passwords of) the schema's three roles, creates the schema
 * owned by its owner role, and gives worker and serving what they need on the schema
 * itself. Idempotent. `admin` must be able to create roles.
 */
export async function provisionRoles(admin: Knex, schema: string, passwords: Record<DbRole, string>): Promise<void> {
  const names = Object.fromEntries(DB_ROLES.map((r) => [r, roleName(schema, r)])) as Record<DbRole, string>;
  await admin.transaction(async (trx) => {
    // Concurrent provisioning of the same schema (two test files, two `fti migrate`) serialises here.
    await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`fti.roles:${schema}`]);
    for (const role of DB_ROLES) {
      const exists = await trx.raw('select 1 from pg_roles where rolname = ?', [names[role]]);
      // NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS: only what is granted below.
      const attributes = `login nosuperuser nocreatedb nocreaterole noinherit noreplication nobypassrls password ${quoteLiteral(passwords[role])}`;
      if ((exists as { rows: unknown[] }).rows.length === 0) await trx.raw(`create role ?? ${attributes}`, [names[role]]);
      else await trx.raw(`alter role ?? ${attributes}`, [names[role]]);
    }
    await trx.raw('create schema if not exists ?? authorization ??', [schema, names.owner]);
    await trx.raw('alter schema ?? owner to ??', [schema, names.owner]);
    await adoptTables(trx, schema, names);
    await trx.raw('grant usage on schema ?? to ??, ??', [schema, names.worker, names.serving]);
    await trx.raw('grant create on schema ?? to ??', [schema, names.worker]);
    // The worker may create tables (feature groups, commits, datasets): it must not see other schemas' objects.
    await trx.raw('revoke create on schema public from ??, ??', [names.worker, names.serving]);
  });
}

/**
 * A schema made before it had roles (by one all-powerful user) is handed over: the
 * feature and dataset tables (fg_*, td_*: what workers create) to the worker, every
 * other table (the migrations') to the owner. Nothing to do in a provisioned schema.
 */
async function adoptTables(trx: Knex.Transaction, schema: string, names: Record<DbRole, string>): Promise<void> {
  const result = (await trx.raw(
    `select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = ? and c.relkind in ('r', 'p') and pg_get_userbyid(c.relowner) <> all(?)`,
    [schema, Object.values(names)],
  )) as { rows: Array<{ name: string }> };
  for (const { name } of result.rows) {
    await trx.raw('alter table ??.?? owner to ??', [schema, name, /^(fg|td)_/.test(name) ? names.worker : names.owner]);
  }
}

/** Drops the schema and its three roles (tests clean up with this). */
export async function dropSchemaAndRoles(admin: Knex, schema: string): Promise<void> {
  await admin.raw('drop schema if exists ?? cascade', [schema]);
  for (const role of DB_ROLES) {
    const name = roleName(schema, role);
    const exists = await admin.raw('select 1 from pg_roles where rolname = ?', [name]);
    if ((exists as { rows: unknown[] }).rows.length === 0) continue;
    // Privileges it holds elsewhere (database CONNECT, default privileges) go with it.
    await admin.raw('drop owned by ?? cascade', [name]);
    await admin.raw('drop role ??', [name]);
  }
}

/** A SQL string literal: CREATE ROLE … PASSWORD takes no bind parameters. */
function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new TypeError('a password must not contain NUL');
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * Lets the current schema's serving role read `table` (an online table the worker has
 * just created and owns). Nothing happens in a schema without a serving role.
 */
export async function grantServingRead(knex: Knex, table: string): Promise<void> {
  const result = (await knex.raw(`select current_schema() || '_serving' as name, exists (select 1 from pg_roles where rolname = current_schema() || '_serving') as exists`)) as {
    rows: Array<{ name: string; exists: boolean }>;
  };
  const role = result.rows[0];
  if (role?.exists) await knex.raw('grant select on ?? to ??', [table, role.name]);
}
