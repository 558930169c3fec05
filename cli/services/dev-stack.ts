/**
 * The whole local system in one call, for `fti dev` and `npm run demo`: Postgres
 * (embedded unless DATABASE_URL), migrations, a Temporal dev server with its Web UI
 * (unless one already answers at TEMPORAL_ADDRESS), and one CPU and one GPU worker
 * process, each serving Prometheus metrics on a port of its own. `stop()` takes it down
 * in reverse order.
 */
import path from 'node:path';
import type { FtiConfig } from '../../core/config.ts';
import type { Logger } from '../../core/log.ts';
import { isListening } from './ports.ts';
import { migrateStore, startPostgres, type PostgresHandle } from './postgres.ts';
import { resolveTemporalCli } from './temporal-cli.ts';
import { startTemporalDevServer, type DevServer } from './temporal-server.ts';
import { startWorkerProcess } from './worker-process.ts';

export interface DevStack {
  databaseUrl: string;
  temporalAddress: string;
  uiUrl: string | undefined;
  /** Environment that points a child process (worker, CLI) at this stack. */
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export interface DevStackOptions {
  workers?: boolean;
  /** Echo worker output (prefixed) to this logger. */
  workerLog?: Logger;
}

export async function startDevStack(config: FtiConfig, log: Logger, options: DevStackOptions = {}): Promise<DevStack> {
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch((err: unknown) => log(`stop failed: ${String(err)}`));
  };
  try {
    const postgres: PostgresHandle = await startPostgres(config, { log: (l) => log(l) });
    stops.push(postgres.stop);
    const applied = await migrateStore(config, postgres);
    log(`migrations: ${applied.length ? `applied ${applied.join(', ')}` : 'schema up to date'}`, { schema: config.schema });

    const { address, uiUrl } = await ensureTemporal(config, log, stops);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      // Workers and CLI commands started from here connect as the worker role.
      DATABASE_URL: postgres.urls.worker,
      TEMPORAL_ADDRESS: address,
      TEMPORAL_NAMESPACE: config.temporalNamespace,
      FTI_SCHEMA: config.schema,
      FTI_TASK_QUEUE_PREFIX: config.taskQueuePrefix,
      // A person reads this terminal: workers log text here unless FTI_LOG_FORMAT says otherwise (JSON is for log shippers).
      FTI_LOG_FORMAT: config.logFormat ?? 'text',
      // Model reports link their training run in the Web UI.
      ...((config.temporalUiUrl ?? uiUrl) !== undefined ? { TEMPORAL_UI_URL: config.temporalUiUrl ?? uiUrl } : {}),
    };
    if (options.workers !== false) {
      const workerLog = options.workerLog ?? log;
      const pools = ['cpu', 'gpu'] as const;
      // Both start side by side (the CPU worker bundles the workflows while the GPU worker probes its backends): seconds off every start.
      const started = await Promise.allSettled(
        pools.map((pool, i) => {
          // Each worker serves its own /metrics: FTI_WORKER_METRICS_PORT for the CPU worker and the next port for the GPU worker, else free ports.
          const metricsPort = config.workerMetricsPort ? config.workerMetricsPort + i : 0;
          return startWorkerProcess(pool, { env: { ...env, FTI_WORKER_METRICS_PORT: String(metricsPort) }, detached: true, onLine: (line) => workerLog(`${pool} | ${line}`) });
        }),
      );
      for (const [i, result] of started.entries()) {
        if (result.status === 'rejected') continue;
        const worker = result.value;
        stops.push(async () => {
          await worker.stop();
        });
        const metricsUrl = worker.metricsUrl();
        if (metricsUrl) log(`${pools[i]} worker metrics: ${metricsUrl}`);
      }
      const failed = started.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    return { databaseUrl: postgres.urls.worker, temporalAddress: address, uiUrl, env, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function ensureTemporal(
  config: FtiConfig,
  log: Logger,
  stops: Array<() => Promise<void>>,
): Promise<{ address: string; uiUrl: string | undefined }> {
  const [host = 'localhost', portText = '7233'] = config.temporalAddress.split(':');
  const port = Number(portText);
  const local = ['localhost', '127.0.0.1', '::1'].includes(host);
  if (!local || (await isListening(port))) {
    log(`temporal: using the server already at ${config.temporalAddress}`);
    return { address: config.temporalAddress, uiUrl: local ? `http://localhost:${config.temporalUiPort}` : undefined };
  }
  const cliPath = await resolveTemporalCli(config, { allowBuild: true, allowDownload: true, log: (l) => log(l) });
  const server: DevServer = await startTemporalDevServer({
    cliPath,
    port,
    uiPort: config.temporalUiPort,
    dbFile: path.join(config.dataDir, 'temporal.sqlite'),
    namespace: config.temporalNamespace,
    log: (l) => log(l),
  });
  stops.push(server.stop);
  return { address: server.address, uiUrl: server.uiUrl };
}
