/**
 * Postgres for the project, with least-privilege roles (registry/db/roles.ts).
 *
 * - `DATABASE_URL` set: every process connects with it (a deployment gives each
 *   process its own role's URL); with `FTI_ADMIN_DATABASE_URL` also set, `fti
 *   migrate` provisions the roles first.
 * - otherwise an embedded Postgres 17 (postgres-cluster.ts) with its data under
 *   FTI_DATA_DIR/pg. It is provisioned for the configured schema and hands each
 *   process its role's URL: migrations as `<schema>_owner`, workers and the CLI as
 *   `<schema>_worker`, `fti serve` as `<schema>_serving`. Its superuser only
 *   provisions. A second process that finds the server already running on its port
 *   reuses it and leaves it running.
 */
import fs from 'node:fs';
import path from 'node:path';
import knexFactory from 'knex';
import pg from 'pg';
import { embeddedPostgresUrl, embeddedRolePasswords, embeddedRoleUrl, type FtiConfig } from '../../core/config.ts';
import { DB_ROLES, type DbRole } from '../../core/db-roles.ts';
import { createKnex, migrate, provisionRoles } from '../../registry/db/index.ts';
import { initCluster, startCluster } from './postgres-cluster.ts';
import { isListening } from './ports.ts';

export interface PostgresHandle {
  /** The URL each role's processes connect with, for the configured schema. */
  urls: Record<DbRole, string>;
  /** A connection that may create roles: the embedded cluster's superuser, or FTI_ADMIN_DATABASE_URL. */
  adminUrl: string | undefined;
  /** True when this process started the server (and `stop` will stop it). */
  started: boolean;
  stop(): Promise<void>;
}

// Must agree with embeddedPostgresUrl in core/config.ts.
const SUPERUSER = 'fti';
const PASSWORD = 'fti';
const DATABASE = 'fti';

export interface StartPostgresOptions {
  /** Use this data directory instead of FTI_DATA_DIR/pg. */
  dataDir?: string;
  /** Use this port instead of FTI_PG_PORT. */
  port?: number;
  /** Delete the data directory on stop (tests). */
  ephemeral?: boolean;
  /** Create the configured schema's roles on the embedded cluster (default true). */
  provision?: boolean;
  log?: (line: string) => void;
}

export async function startPostgres(config: FtiConfig, options: StartPostgresOptions = {}): Promise<PostgresHandle> {
  if (config.databaseUrl) {
    const url = config.databaseUrl;
    return { urls: { owner: url, worker: url, serving: url }, adminUrl: config.adminDatabaseUrl, started: false, stop: async () => {} };
  }
  const log = options.log ?? (() => {});
  const port = options.port ?? config.embeddedPgPort;
  const adminUrl = embeddedPostgresUrl(port);
  const handle = (started: boolean, stop: () => Promise<void>): PostgresHandle => ({ urls: embeddedRoleUrls(adminUrl, config.schema), adminUrl, started, stop });
  if (await isListening(port)) {
    await assertReachable(adminUrl, port);
    log(`postgres: reusing the embedded server already running on port ${port}`);
    if (options.provision !== false) await provisionEmbedded(adminUrl, config.schema);
    return handle(false, async () => {});
  }

  const started = Date.now();
  const cluster = { dataDir: options.dataDir ?? path.join(config.dataDir, 'pg'), port, superuser: SUPERUSER, password: PASSWORD, log };
  if (!fs.existsSync(path.join(cluster.dataDir, 'PG_VERSION'))) log(`postgres: initialising a new embedded cluster`);
  const dataDir = await initCluster(cluster);
  let server;
  try {
    // A single node without replicas: wal_level=minimal lets a table created and filled
    // in one transaction (a commit's partition, a training dataset) skip the WAL and be
    // synced once at commit — still crash-safe, about twice as fast for a 3M-row dataset.
    server = await startCluster(dataDir, { ...cluster, settings: { listen_addresses: '127.0.0.1', max_connections: '200', wal_level: 'minimal', max_wal_senders: '0' } });
  } catch (err) {
    throw new Error(`embedded Postgres failed to start on port ${port} (data in ${dataDir}): ${err instanceof Error ? err.message : String(err)}`);
  }
  const stop = async () => {
    await server.stop();
    if (options.ephemeral) fs.rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const admin = new pg.Client({ connectionString: embeddedPostgresUrl(port, 'postgres') });
    await admin.connect();
    try {
      const exists = await admin.query('select 1 from pg_database where datname = $1', [DATABASE]);
      if (exists.rowCount === 0) await admin.query(`create database ${DATABASE}`);
    } finally {
      await admin.end();
    }
    if (options.provision !== false) await provisionEmbedded(adminUrl, config.schema);
  } catch (err) {
    await stop();
    throw err;
  }
  log(`postgres: embedded Postgres 17 on port ${port} ready in ${Date.now() - started} ms`);
  return handle(true, stop);
}

/** The embedded cluster's role URLs for `schema`. */
export function embeddedRoleUrls(adminUrl: string, schema: string): Record<DbRole, string> {
  return Object.fromEntries(DB_ROLES.map((r) => [r, embeddedRoleUrl(adminUrl, schema, r)])) as Record<DbRole, string>;
}

/** Provisions `schema`'s roles on the embedded cluster (idempotent). */
export async function provisionEmbedded(adminUrl: string, schema: string): Promise<Record<DbRole, string>> {
  await withAdmin(adminUrl, (admin) => provisionRoles(admin, schema, embeddedRolePasswords(schema)));
  return embeddedRoleUrls(adminUrl, schema);
}

async function withAdmin<T>(url: string, fn: (admin: knexFactory.Knex) => Promise<T>): Promise<T> {
  const admin = knexFactory({ client: 'pg', connection: { connectionString: url, application_name: 'fti-provision' }, pool: { min: 0, max: 1 } });
  try {
    return await fn(admin);
  } finally {
    await admin.destroy();
  }
}

async function assertReachable(url: string, port: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (err) {
    throw new Error(
      `port ${port} is taken by something that is not this project's embedded Postgres (${String(err)}); set FTI_PG_PORT to another port or DATABASE_URL to your own server`,
    );
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * `fti migrate`: provisions the schema's roles when an admin connection is known
 * for a server of your own (FTI_ADMIN_DATABASE_URL with the three FTI_*_PASSWORDs;
 * the embedded cluster was provisioned when it started), then applies pending
 * migrations as the owner role. Returns the migrations applied.
 */
export async function migrateStore(config: FtiConfig, postgres: PostgresHandle): Promise<string[]> {
  if (config.databaseUrl && config.adminDatabaseUrl) {
    const { owner, worker, serving } = config.rolePasswords;
    if (!owner || !worker || !serving) throw new Error('FTI_ADMIN_DATABASE_URL provisions the owner, worker and serving roles: set FTI_OWNER_PASSWORD, FTI_WORKER_PASSWORD and FTI_SERVING_PASSWORD too');
    await withAdmin(config.adminDatabaseUrl, (admin) => provisionRoles(admin, config.schema, { owner, worker, serving }));
  }
  const knex = createKnex({ url: postgres.urls.owner, schema: config.schema, applicationName: 'fti-migrate' });
  try {
    return await migrate(knex, config.schema);
  } finally {
    await knex.destroy();
  }
}
