/**
 * Every environment variable the project reads, in one place. The README's config
 * table mirrors this file; keep them in step.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { roleName, urlWithRole, type DbRole } from './db-roles.ts';
import { durationMs, isDuration, type Duration } from './duration.ts';
import { formatIssues } from './errors.ts';

/** The flights example, resolved against the repository (not the working directory). */
const DEFAULT_DEFINITIONS = fileURLToPath(new URL('../examples/flights/definitions.ts', import.meta.url));

const port = z.coerce.number().int().min(1).max(65535);

const EnvSchema = z.object({
  DATABASE_URL: z.string().min(1).optional(),
  FTI_ADMIN_DATABASE_URL: z.string().min(1).optional(),
  FTI_OWNER_PASSWORD: z.string().min(1).optional(),
  FTI_WORKER_PASSWORD: z.string().min(1).optional(),
  FTI_SERVING_PASSWORD: z.string().min(1).optional(),
  FTI_SCHEMA: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/).default('fti'),
  FTI_DATA_DIR: z.string().min(1).optional(),
  FTI_PG_PORT: port.default(54329),
  FTI_CACHE_DIR: z.string().min(1).optional(),
  TEMPORAL_ADDRESS: z.string().min(1).default('localhost:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_UI_PORT: port.default(8233),
  TEMPORAL_UI_URL: z.url().optional(),
  TEMPORAL_CLI_PATH: z.string().min(1).optional(),
  FTI_TASK_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]*$/).default(''),
  FTI_TFJS_BACKEND: z.enum(['tensorflow', 'webgpu', 'wasm', 'cpu']).optional(),
  FTI_WORKER_CONCURRENCY: z.coerce.number().int().min(1).optional(),
  FTI_WORKER_HEAP_MB: z.coerce.number().int().min(128).default(768),
  FTI_EPOCH_CACHE_MB: z.coerce.number().int().min(0).default(1024),
  FTI_SEGMENT_CACHE_MB: z.coerce.number().int().min(0).default(4096),
  FTI_FEATURE_READER_THREADS: z.coerce.number().int().min(0).optional(),
  FTI_WORKER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  FTI_WORKER_METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  FTI_LOG_FORMAT: z.enum(['json', 'text']).optional(),
  FTI_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
  FTI_DEFINITIONS: z.string().min(1).optional(),
  FTI_DATA_ROOTS: z.string().optional(),
  FTI_SERVE_HOST: z.string().min(1).default('127.0.0.1'),
  FTI_SERVE_PORT: port.default(8080),
  FTI_SERVING_TOKEN: z.string().min(1).optional(),
  FTI_SERVING_METRICS_PUBLIC: z.stringbool().default(false),
  FTI_SERVING_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1).optional(),
  FTI_SERVING_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).optional(),
  FTI_SERVING_SKEW_LOG_RATE: z.coerce.number().min(0).max(1).optional(),
  FTI_GC_RETENTION: z.string().refine(isRetention, 'must be a duration such as 12h or 7d, or 0').default('7d'),
});

export interface FtiConfig {
  /** Postgres connection string of this process's role; unset means "embedded Postgres under dataDir". */
  databaseUrl: string | undefined;
  /** A connection that may create roles: `fti migrate` then provisions the schema's roles first. */
  adminDatabaseUrl: string | undefined;
  /** The roles' passwords `fti migrate` provisions with (with adminDatabaseUrl; all three required then). */
  rolePasswords: Partial<Record<DbRole, string>>;
  /** Postgres schema that holds the registry, feature tables and predictions. */
  schema: string;
  /** Local state: embedded Postgres data, dev-server database. */
  dataDir: string;
  /** Port of the embedded Postgres (ignored when databaseUrl is set). */
  embeddedPgPort: number;
  /** Where slow one-time builds (the Temporal CLI) are cached, outside the repo. */
  cacheDir: string;
  temporalAddress: string;
  temporalNamespace: string;
  temporalUiPort: number;
  /** The Temporal Web UI's base URL (e.g. http://localhost:8233), for links to runs (model reports); unset: no links. `fti dev` and the demo set it for their workers. */
  temporalUiUrl: string | undefined;
  temporalCliPath: string | undefined;
  taskQueuePrefix: string;
  tfjsBackend: 'tensorflow' | 'webgpu' | 'wasm' | 'cpu' | undefined;
  workerConcurrency: number | undefined;
  /**
   * V8 heap limit (MB) of the worker processes fti starts (`--max-old-space-size`). Without
   * one, V8 lets the heap grow with the work done and a worker's RSS grows with the data
   * (1.1 GB at 3M flights, 1.3 GB at 10M); with 640 MB the 3M run peaked at 639 MB, no slower.
   * Typed arrays (training rows, tensors) live outside this heap.
   */
  workerHeapMb: number;
  /**
   * Memory (MB) a training run may use to keep its train and validation splits encoded
   * after the first epoch, so the epochs after replay them instead of reading Postgres
   * (ml/epoch-cache.ts): the flights MLP's 2.4M train rows take about 770 MB. A split
   * over what is left is read every epoch. 0: none kept.
   */
  epochCacheMb: number;
  /**
   * Disk (MB, under cacheDir/segments) a process may keep joined groups' range
   * partitions in as column segments (registry/feature-store/segments.ts), so that a
   * point-in-time join reads a partition no commit changed since from its file instead
   * of Postgres: the flights example's 8.6M airport rows take about 1.4 GB. 0: none kept.
   */
  segmentCacheMb: number;
  /**
   * Threads a CPU worker reads batch inference's features on (activities/feature-reader.ts),
   * so that reading and scoring use both cores: by default one per core, at most 4.
   * 0: read on the worker's main thread.
   */
  featureReaderThreads: number;
  /**
   * Where a worker process serves Prometheus metrics (GET /metrics: ours and the Temporal
   * SDK's): a port, 0 for a free one (logged at start), unset for none. `fti dev` and the
   * demo give each of their workers one.
   */
  workerMetricsPort: number | undefined;
  /** The address that metrics endpoint binds (127.0.0.1: this machine only; 0.0.0.0 for a scraper elsewhere). */
  workerMetricsHost: string;
  /** Log lines of worker processes: json (the default for workers) or text; interactive commands always print text. */
  logFormat: 'json' | 'text' | undefined;
  /** The least level a worker process logs (its activities' and the SDK's lines too). */
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Module that default-exports the deployment's definitions (defineProject). */
  definitionsModule: string;
  /**
   * Directories a workflow input's source file must resolve into (symlinks followed), from
   * FTI_DATA_ROOTS (path-delimiter separated). Empty: only the definitions' own files.
   */
  dataRoots: string[];
  /** Where `fti serve` listens. */
  serveHost: string;
  servePort: number;
  /** Bearer token(s) `fti serve` requires (comma-separated); unset: no auth. */
  servingToken: string | undefined;
  /** GET /metrics without a token even when one is set. */
  servingMetricsPublic: boolean;
  /** A prediction request that takes longer answers 503 (unset: the server's default, 5 s). */
  servingRequestTimeoutMs: number | undefined;
  /** statement_timeout of the server's database pool, 0 for none (unset: the server's default, 2 s). */
  servingStatementTimeoutMs: number | undefined;
  /** Share of served entities `fti serve` logs for skew checks, 0 to 1 (0: none; unset: the server's default, 0.01). */
  servingSkewLogRate: number | undefined;
  /** How old a leftover must be before `fti gc` (and the gc workflow) reaps it. */
  gcRetention: Retention;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): FtiConfig {
  const parsed = EnvSchema.safeParse(emptyToUndefined(env));
  if (!parsed.success) {
    const problems = formatIssues(parsed.error.issues);
    throw new Error(`invalid environment: ${problems}`);
  }
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    adminDatabaseUrl: e.FTI_ADMIN_DATABASE_URL,
    rolePasswords: { owner: e.FTI_OWNER_PASSWORD, worker: e.FTI_WORKER_PASSWORD, serving: e.FTI_SERVING_PASSWORD },
    schema: e.FTI_SCHEMA,
    dataDir: path.resolve(e.FTI_DATA_DIR ?? '.fti'),
    embeddedPgPort: e.FTI_PG_PORT,
    cacheDir: path.resolve(e.FTI_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'fti')),
    temporalAddress: e.TEMPORAL_ADDRESS,
    temporalNamespace: e.TEMPORAL_NAMESPACE,
    temporalUiPort: e.TEMPORAL_UI_PORT,
    temporalUiUrl: e.TEMPORAL_UI_URL,
    temporalCliPath: e.TEMPORAL_CLI_PATH,
    taskQueuePrefix: e.FTI_TASK_QUEUE_PREFIX,
    tfjsBackend: e.FTI_TFJS_BACKEND,
    workerConcurrency: e.FTI_WORKER_CONCURRENCY,
    workerHeapMb: e.FTI_WORKER_HEAP_MB,
    epochCacheMb: e.FTI_EPOCH_CACHE_MB,
    segmentCacheMb: e.FTI_SEGMENT_CACHE_MB,
    featureReaderThreads: e.FTI_FEATURE_READER_THREADS ?? Math.min(4, os.availableParallelism()),
    workerMetricsPort: e.FTI_WORKER_METRICS_PORT,
    workerMetricsHost: e.FTI_WORKER_METRICS_HOST,
    logFormat: e.FTI_LOG_FORMAT,
    logLevel: e.FTI_LOG_LEVEL,
    definitionsModule: e.FTI_DEFINITIONS ? path.resolve(e.FTI_DEFINITIONS) : DEFAULT_DEFINITIONS,
    dataRoots: (e.FTI_DATA_ROOTS ?? '').split(path.delimiter).filter((r) => r.trim() !== '').map((r) => path.resolve(r)),
    serveHost: e.FTI_SERVE_HOST,
    servePort: e.FTI_SERVE_PORT,
    servingToken: e.FTI_SERVING_TOKEN,
    servingMetricsPublic: e.FTI_SERVING_METRICS_PUBLIC,
    servingRequestTimeoutMs: e.FTI_SERVING_REQUEST_TIMEOUT_MS,
    servingStatementTimeoutMs: e.FTI_SERVING_STATEMENT_TIMEOUT_MS,
    servingSkewLogRate: e.FTI_SERVING_SKEW_LOG_RATE,
    gcRetention: e.FTI_GC_RETENTION as Retention,
  };
}

/** How long `fti gc` leaves a leftover alone: a duration (`7d`), or `0` (whatever is no longer in use, however recent). */
export type Retention = Duration | '0';

export function isRetention(value: unknown): value is Retention {
  return value === '0' || isDuration(value);
}

export function retentionMs(retention: Retention): number {
  return retention === '0' ? 0 : durationMs(retention);
}

/**
 * The Postgres a process of `role` connects to: DATABASE_URL (a deployment gives
 * each process its own role's URL), else the embedded server as the schema's role.
 */
export function databaseUrl(config: FtiConfig, role: DbRole): string {
  return config.databaseUrl ?? embeddedRoleUrl(embeddedPostgresUrl(config.embeddedPgPort), config.schema, role);
}

/** The embedded cluster's superuser: it only creates databases and roles. */
export function embeddedPostgresUrl(port: number, database = 'fti'): string {
  return `postgres://fti:fti@127.0.0.1:${port}/${database}`;
}

/**
 * A role's URL on the embedded cluster. Its passwords are the role names: the
 * cluster listens on 127.0.0.1 only and serves development and tests, where the
 * roles are there so each process holds only its own rights, not for secrecy.
 */
export function embeddedRoleUrl(adminUrl: string, schema: string, role: DbRole): string {
  return urlWithRole(adminUrl, roleName(schema, role), embeddedRolePasswords(schema)[role]);
}

/** The passwords the embedded cluster's roles are provisioned with (see embeddedRoleUrl). */
export function embeddedRolePasswords(schema: string): Record<DbRole, string> {
  return { owner: roleName(schema, 'owner'), worker: roleName(schema, 'worker'), serving: roleName(schema, 'serving') };
}

/** `FOO=` in a shell means "not set" for our purposes. */
function emptyToUndefined(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) out[k] = v === '' ? undefined : v;
  return out;
}
