/**
 * `fti serve`: the online prediction server. Runs until SIGINT/SIGTERM, then stops
 * accepting connections, lets requests in flight finish, and exits 0.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/log.ts';
import { loadBackend } from '../../ml/backend.ts';
import { createKnex } from '../../registry/db/index.ts';
import { DEFAULT_STATEMENT_TIMEOUT_MS, withStatementTimeout } from '../../serving/database.ts';
import { buildServer, DEFAULT_BODY_LIMIT, DEFAULT_MAX_ENTITIES, DEFAULT_REQUEST_TIMEOUT_MS } from '../../serving/server.ts';
import { DEFAULT_SKEW_LOG_RATE } from '../../serving/skew-log.ts';
import { LOOKUPS_IN_FLIGHT } from '../../serving/served-model.ts';
import { startPostgres } from '../services/postgres.ts';

interface ServeOptions {
  preload?: string[];
  port?: number;
  host?: string;
  bodyLimit?: number;
  maxEntities?: number;
  allowVersion?: string[];
  requestTimeout?: number;
  statementTimeout?: number;
  skewLogRate?: number;
}

export function registerServeCommands(program: Command): void {
  program
    .command('serve')
    .description('run the online prediction server: POST /v1/models/{name}[@alias|@version]/predict, GET /healthz, GET /metrics')
    .option('--port <port>', 'port to listen on (default: FTI_SERVE_PORT, 8080)', positiveInt)
    .option('--host <host>', 'address to listen on (default: FTI_SERVE_HOST, 127.0.0.1; 0.0.0.0 for every interface)')
    .option('--body-limit <bytes>', `largest request body (default ${DEFAULT_BODY_LIMIT})`, positiveInt)
    .option('--max-entities <n>', `most entities per request (default ${DEFAULT_MAX_ENTITIES})`, positiveInt)
    .option('--preload <models...>', 'load these before listening: NAME, NAME@ALIAS or NAME@VERSION')
    .option('--allow-version <versions...>', 'NAME@VERSION that may be loaded by number although it never held an alias')
    .option('--request-timeout <ms>', `a prediction that takes longer answers 503 (default: FTI_SERVING_REQUEST_TIMEOUT_MS, ${DEFAULT_REQUEST_TIMEOUT_MS})`, positiveInt)
    .option('--statement-timeout <ms>', `statement_timeout of the server's database pool, 0 for none (default: FTI_SERVING_STATEMENT_TIMEOUT_MS, ${DEFAULT_STATEMENT_TIMEOUT_MS})`, nonNegativeInt)
    .option('--skew-log-rate <share>', `share of served entities logged for skew checks (fti monitor skew), 0 to 1, 0 for none (default: FTI_SERVING_SKEW_LOG_RATE, ${DEFAULT_SKEW_LOG_RATE})`, share)
    .action(async (opts: ServeOptions) => {
      await serve(opts);
    });
}

async function serve(opts: ServeOptions): Promise<void> {
  const config = loadConfig();
  const log = createLogger('serve');
  const backend = await loadBackend('cpu', config.tfjsBackend);
  for (const reason of backend.skipped) log(`tfjs backend skipped: ${reason}`);
  log(`TensorFlow.js backend: ${backend.name} (${backend.package}) on ${backend.device}`);
  const postgres = await startPostgres(config, { log: (line) => log(line) });
  // The serving role: it reads models, definitions and online tables, and writes only the skew log.
  // Every statement of the server's pool is bounded: a blocked lookup is cancelled, not waited for.
  const statementTimeoutMs = opts.statementTimeout ?? config.servingStatementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  // Its lookups' connections (and one for the rest) stay open: no request waits for a reconnect after a quiet spell.
  // Its statements are key lookups: each is planned once per connection, not once per request, and probes its index.
  const knex = createKnex({
    url: withStatementTimeout(postgres.urls.serving, statementTimeoutMs),
    schema: config.schema,
    applicationName: 'fti-serve',
    poolMin: LOOKUPS_IN_FLIGHT + 1,
    pointLookups: true,
  });
  try {
    const { app } = await buildServer({
      knex,
      tf: backend.tf,
      databaseUrl: postgres.urls.serving,
      schema: config.schema,
      bodyLimit: opts.bodyLimit,
      maxEntities: opts.maxEntities,
      preload: opts.preload,
      allowVersions: opts.allowVersion,
      requestTimeoutMs: opts.requestTimeout ?? config.servingRequestTimeoutMs,
      skewLogRate: opts.skewLogRate ?? config.servingSkewLogRate,
      // From the environment only: a token on the command line would show in `ps`.
      tokens: config.servingToken,
      metricsPublic: config.servingMetricsPublic,
      log,
    });
    const address = await app.listen({ port: opts.port ?? config.servePort, host: opts.host ?? config.serveHost });
    log(`listening on ${address}`, {
      schema: config.schema,
      tfjsBackend: backend.name,
      auth: config.servingToken ? `bearer token${config.servingToken.includes(',') ? 's' : ''}${config.servingMetricsPublic ? ' (metrics public)' : ''}` : 'none',
      statementTimeoutMs,
      skewLogRate: opts.skewLogRate ?? config.servingSkewLogRate ?? DEFAULT_SKEW_LOG_RATE,
    });
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    log(`${signal}: finishing requests in flight`);
    await app.close();
    log('stopped cleanly');
  } finally {
    await knex.destroy();
    await postgres.stop();
  }
}

function share(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('must be a number from 0 to 1');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number, 0 or more');
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}
