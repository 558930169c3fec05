/**
 * Least privilege in Postgres: each process's role can do its job and nothing more.
 * Every statement here is one an attacker who controls a worker or the prediction
 * server would try; each must fail with Postgres's own "permission denied" (42501)
 * or "must be superuser"-class error, and leave the store as it was.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { roleName, urlWithRole } from '../../core/db-roles.ts';
import { defineFeatureGroup } from '../../features/definitions.ts';
import { createKnex, dropSchemaAndRoles } from '../../registry/db/index.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { REPO_ROOT } from '../helpers/processes.ts';
import { createTestDb, uniqueId, type TestDb } from '../helpers/services.ts';

/** The SQLSTATE a statement fails with, or 'ok' when it succeeds. */
async function sqlState(knex: Knex, sql: string, bindings: readonly unknown[] = []): Promise<string> {
  try {
    await knex.raw(sql, bindings as Knex.RawBinding[]);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

const DENIED = '42501'; // insufficient_privilege

describe('database roles', () => {
  let db: TestDb;
  let other: TestDb;
  let serving: Knex;
  let owner: Knex;

  beforeAll(async () => {
    db = await createTestDb('roles');
    other = await createTestDb('roles_other');
    serving = createKnex({ url: db.urlFor('serving'), schema: db.schema, poolMax: 2 });
    owner = createKnex({ url: db.urlFor('owner'), schema: db.schema, poolMax: 1 });
    // One online feature group, registered (and its tables created) by the worker, as a feature run does.
    const store = new FeatureStore({ knex: db.knex });
    await store.register(
      defineFeatureGroup({
        name: 'readings',
        version: 1,
        entityKeys: ['sensor'],
        eventTime: 'at',
        features: { sensor: 'string', at: 'timestamp', value: 'float' },
        online: true,
        source: { kind: 'csv', path: '/nonexistent.csv' },
      }),
    );
  });

  afterAll(async () => {
    await serving?.destroy();
    await owner?.destroy();
    await other?.close();
    await db?.close();
  });

  it('every process role is a plain login role: no superuser, no role or database creation, no server-file roles', async () => {
    const roles = await db.knex.raw(
      `select rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
              pg_has_role(rolname, 'pg_read_server_files', 'member') as reads_files,
              pg_has_role(rolname, 'pg_execute_server_program', 'member') as runs_programs
       from pg_roles where rolname = any(?) order by rolname`,
      [[roleName(db.schema, 'owner'), roleName(db.schema, 'worker'), roleName(db.schema, 'serving')]],
    );
    const rows = (roles as { rows: Array<Record<string, unknown>> }).rows;
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row, String(row.rolname)).toMatchObject({ rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolreplication: false, rolbypassrls: false, reads_files: false, runs_programs: false });
    }
    expect(((await db.knex.raw('select current_user as u')) as { rows: Array<{ u: string }> }).rows[0]?.u).toBe(roleName(db.schema, 'worker'));
  });

  it('the worker role cannot create a role, read a server file, run a program, or touch another schema', async () => {
    expect(await sqlState(db.knex, 'create role fti_attacker login superuser')).toBe(DENIED);
    expect(await sqlState(db.knex, 'create role fti_attacker')).toBe(DENIED);
    expect(await sqlState(db.knex, "select pg_read_file('/etc/passwd')")).toBe(DENIED);
    expect(await sqlState(db.knex, "select pg_ls_dir('/')")).toBe(DENIED);
    expect(await sqlState(db.knex, 'create temporary table leak (line text)')).toBe('ok');
    expect(await sqlState(db.knex, "copy leak from '/etc/passwd'")).toBe(DENIED);
    expect(await sqlState(db.knex, "copy leak from program 'id'")).toBe(DENIED);
    expect(await sqlState(db.knex, "alter system set log_statement = 'none'")).toBe(DENIED);
    // Another suite's schema: not even its name resolves to anything readable.
    expect(await sqlState(db.knex, 'select count(*) from ??.??', [other.schema, 'models'])).toBe(DENIED);
    expect(await sqlState(db.knex, 'create table ??.?? (x int)', [other.schema, 'planted'])).toBe(DENIED);
    expect(await sqlState(db.knex, 'create table public.planted (x int)')).toBe(DENIED);
    // The registry tables belong to the owner: the worker writes rows, never their shape.
    expect(await sqlState(db.knex, 'drop table models')).toBe(DENIED);
    expect(await sqlState(db.knex, 'alter table model_versions add column planted int')).toBe(DENIED);
    expect(await sqlState(db.knex, 'truncate model_aliases')).toBe(DENIED);
    expect(await sqlState(db.knex, 'select count(*) from knex_migrations')).toBe(DENIED);
    expect(await sqlState(other.knex, 'select count(*) from ??.??', [db.schema, 'feature_groups'])).toBe(DENIED);
  });

  it('the worker does its job: reads and writes registry rows, and creates the feature tables it owns', async () => {
    expect(await sqlState(db.knex, 'select count(*) from models')).toBe('ok');
    const groups = (await db.knex.raw('select tableowner from pg_tables where schemaname = ? and tablename like ?', [db.schema, 'fg_readings_v1%'])) as { rows: Array<{ tableowner: string }> };
    expect(groups.rows.length).toBeGreaterThanOrEqual(3);
    expect(new Set(groups.rows.map((r) => r.tableowner))).toEqual(new Set([roleName(db.schema, 'worker')]));
  });

  it('the serving role reads models, reports, definitions and online tables, writes only the served log, and reads nothing else', async () => {
    expect(await sqlState(serving, 'select count(*) from models')).toBe('ok');
    expect(await sqlState(serving, 'select count(*) from model_artifacts')).toBe('ok');
    expect(await sqlState(serving, 'select count(*) from feature_views')).toBe('ok');
    expect(await sqlState(serving, 'select count(*) from model_reports')).toBe('ok');
    expect(await sqlState(serving, 'select count(*) from ??', ['fg_readings_v1__online'])).toBe('ok');
    // Writes of every kind.
    expect(await sqlState(serving, "insert into models (name) values ('planted')")).toBe(DENIED);
    expect(await sqlState(serving, 'update model_aliases set version = 1')).toBe(DENIED);
    expect(await sqlState(serving, 'delete from model_versions')).toBe(DENIED);
    expect(await sqlState(serving, 'insert into ?? (sensor, at, value, _commit_id) values (?, now(), 1, 1)', ['fg_readings_v1__online', 'planted'])).toBe(DENIED);
    expect(await sqlState(serving, 'create table planted (x int)')).toBe(DENIED);
    // The served log (skew checks) is append-only for it: it cannot read, change or empty it.
    expect(await sqlState(serving, 'select count(*) from skew_log')).toBe(DENIED);
    expect(await sqlState(serving, 'update skew_log set prediction = 0')).toBe(DENIED);
    expect(await sqlState(serving, 'select count(*) from feature_skew')).toBe(DENIED);
    // Offline history, predictions and checkpoints are not the server's business.
    expect(await sqlState(serving, 'select count(*) from ??', ['fg_readings_v1'])).toBe(DENIED);
    expect(await sqlState(serving, 'select count(*) from predictions')).toBe(DENIED);
    expect(await sqlState(serving, 'select count(*) from training_checkpoints')).toBe(DENIED);
    expect(await sqlState(serving, "select pg_read_file('/etc/passwd')")).toBe(DENIED);
    expect(((await db.knex.raw("select count(*)::int as n from models where name = 'planted'")) as { rows: Array<{ n: number }> }).rows[0]?.n).toBe(0);
  });

  it('the owner runs DDL in its own schema only, and cannot create roles', async () => {
    expect(await sqlState(owner, 'create table owner_probe (x int)')).toBe('ok');
    expect(await sqlState(owner, 'drop table owner_probe')).toBe('ok');
    expect(await sqlState(owner, 'create role fti_attacker')).toBe(DENIED);
    expect(await sqlState(owner, 'select count(*) from ??.??', [other.schema, 'models'])).toBe(DENIED);
    expect(await sqlState(owner, "select pg_read_file('/etc/passwd')")).toBe(DENIED);
  });

  it('fti migrate with FTI_ADMIN_DATABASE_URL provisions the roles of a server of your own, then migrates as the owner', async () => {
    const adminUrl = inject('adminDatabaseUrl');
    const schema = uniqueId('t_provision');
    const passwords = { owner: crypto.randomBytes(12).toString('hex'), worker: crypto.randomBytes(12).toString('hex'), serving: crypto.randomBytes(12).toString('hex') };
    const as = (role: 'owner' | 'worker' | 'serving') => urlWithRole(adminUrl, roleName(schema, role), passwords[role]);
    const admin = createKnex({ url: adminUrl, schema, poolMax: 1 });
    try {
      await new Promise<void>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', path.join(REPO_ROOT, 'cli', 'main.ts'), 'migrate'],
          {
            cwd: REPO_ROOT,
            env: { ...process.env, DATABASE_URL: as('owner'), FTI_ADMIN_DATABASE_URL: adminUrl, FTI_OWNER_PASSWORD: passwords.owner, FTI_WORKER_PASSWORD: passwords.worker, FTI_SERVING_PASSWORD: passwords.serving, FTI_SCHEMA: schema },
            timeout: 60_000,
          },
          (err, _out, errOut) => (err ? reject(new Error(`fti migrate failed: ${errOut}`)) : resolve()),
        );
      });
      const owners = (await admin.raw('select tableowner, count(*)::int as n from pg_tables where schemaname = ? group by 1', [schema])) as { rows: Array<{ tableowner: string; n: number }> };
      expect(owners.rows).toEqual([{ tableowner: roleName(schema, 'owner'), n: expect.any(Number) }]);
      const worker = createKnex({ url: as('worker'), schema, poolMax: 1 });
      try {
        expect(await sqlState(worker, "insert into system_checks (workflow_id, cpu_worker, gpu_worker) values ('w', '{}', '{}')")).toBe('ok');
        expect(await sqlState(worker, 'create role fti_attacker')).toBe(DENIED);
      } finally {
        await worker.destroy();
      }
    } finally {
      await dropSchemaAndRoles(admin, schema);
      await admin.destroy();
    }
  });
});
