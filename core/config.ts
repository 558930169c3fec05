/**
 * Every environment variable the project reads, in one place. The README's config
 * table mirrors this file; keep them in step.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { formatIssues } from './errors.ts';

/** The flights example, resolved against the repository (not the working directory). */
const DEFAULT_DEFINITIONS = fileURLToPath(new URL('../examples/flights/definitions.ts', import.meta.url));

const port = z.coerce.number().int().min(1).max(65535);

const EnvSchema = z.object({
  DATABASE_URL: z.string().min(1).optional(),
  FTI_SCHEMA: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/).default('fti'),
  FTI_DATA_DIR: z.string().min(1).optional(),
  FTI_PG_PORT: port.default(54329),
  FTI_CACHE_DIR: z.string().min(1).optional(),
  TEMPORAL_ADDRESS: z.string().min(1).default('localhost:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_UI_PORT: port.default(8233),
  TEMPORAL_CLI_PATH: z.string().min(1).optional(),
  FTI_TASK_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]*$/).default(''),
  FTI_TFJS_BACKEND: z.enum(['tensorflow', 'webgpu', 'wasm', 'cpu']).optional(),
  FTI_WORKER_CONCURRENCY: z.coerce.number().int().min(1).optional(),
  FTI_DEFINITIONS: z.string().min(1).optional(),
  FTI_SERVE_HOST: z.string().min(1).default('127.0.0.1'),
  FTI_SERVE_PORT: port.default(8080),
});

export interface FtiConfig {
  /** Postgres connection string; unset means "embedded Postgres under dataDir". */
  databaseUrl: string | undefined;
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
  temporalCliPath: string | undefined;
  taskQueuePrefix: string;
  tfjsBackend: 'tensorflow' | 'webgpu' | 'wasm' | 'cpu' | undefined;
  workerConcurrency: number | undefined;
  /** Module that default-exports the deployment's definitions (defineProject). */
  definitionsModule: string;
  /** Where `fti serve` listens. */
  serveHost: string;
  servePort: number;
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
    schema: e.FTI_SCHEMA,
    dataDir: path.resolve(e.FTI_DATA_DIR ?? '.fti'),
    embeddedPgPort: e.FTI_PG_PORT,
    cacheDir: path.resolve(e.FTI_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'fti')),
    temporalAddress: e.TEMPORAL_ADDRESS,
    temporalNamespace: e.TEMPORAL_NAMESPACE,
    temporalUiPort: e.TEMPORAL_UI_PORT,
    temporalCliPath: e.TEMPORAL_CLI_PATH,
    taskQueuePrefix: e.FTI_TASK_QUEUE_PREFIX,
    tfjsBackend: e.FTI_TFJS_BACKEND,
    workerConcurrency: e.FTI_WORKER_CONCURRENCY,
    definitionsModule: e.FTI_DEFINITIONS ? path.resolve(e.FTI_DEFINITIONS) : DEFAULT_DEFINITIONS,
    serveHost: e.FTI_SERVE_HOST,
    servePort: e.FTI_SERVE_PORT,
  };
}

/** The Postgres to connect to: DATABASE_URL, else the embedded server's address. */
export function databaseUrl(config: FtiConfig): string {
  return config.databaseUrl ?? embeddedPostgresUrl(config.embeddedPgPort);
}

export function embeddedPostgresUrl(port: number): string {
  return `postgres://fti:fti@127.0.0.1:${port}/fti`;
}

/** `FOO=` in a shell means "not set" for our purposes. */
function emptyToUndefined(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) out[k] = v === '' ? undefined : v;
  return out;
}
