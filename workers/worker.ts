/**
 * Shared worker setup for both pools. The CPU pool hosts the workflows and the
 * CPU activities on `<prefix>fti-cpu`; the GPU pool hosts training on
 * `<prefix>fti-gpu`. Connection and schema come from the environment.
 */
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Knex } from 'knex';
import { FeatureReaders } from '../activities/feature-reader.ts';
import { workerMetrics } from '../activities/observability.ts';
import { databaseUrl, loadConfig, type FtiConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import { taskQueue, type Pool } from '../core/task-queues.ts';
import { loadProject, type FtiProject } from '../features/project.ts';
import { loadBackend, type LoadedBackend } from '../ml/backend.ts';
import { createKnex, databaseOf } from '../registry/db/index.ts';
import { activityObserver } from './activity-observer.ts';
import { routeConsole, workerLogger } from './logging.ts';
import { startMetricsServer, type MetricsServer } from './metrics-server.ts';
import { poolActivities } from './pool-activities.ts';
import { installWorkerRuntime } from './runtime.ts';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/**
 * How the workflow bundle is built, by the CPU worker and by the tests alike: with
 * workflows/preload.ts (zod) loaded once per reused V8 context instead of once per
 * workflow.
 */
export const WORKFLOW_BUNDLER_OPTIONS = { preloadModules: [fileURLToPath(new URL('../workflows/preload.ts', import.meta.url))] };

export interface PoolWorkerOptions {
  pool: Pool;
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  knex: Knex;
  backend: LoadedBackend | null;
  project: FtiProject;
  /** Directories a workflow input's source file must resolve into; default: FTI_DATA_ROOTS (see core/config.ts). */
  dataRoots?: string[];
  /** A pre-built workflow bundle (tests build one per run); default: bundle at start. */
  workflowBundle?: { codePath: string };
  maxConcurrentActivities?: number;
  /** Threads a CPU worker reads batch inference's features on; default: FTI_FEATURE_READER_THREADS (0: none). */
  featureReaderThreads?: number;
}

/**
 * Builds a Worker for one pool. The caller owns connection and knex, and calls `close`
 * once the worker has stopped (it ends the threads a CPU worker reads features on).
 */
export async function createPoolWorker(options: PoolWorkerOptions): Promise<{ worker: Worker; activities: string[]; close: () => Promise<void> }> {
  const threads = options.pool === 'cpu' ? (options.featureReaderThreads ?? loadConfig().featureReaderThreads) : 0;
  const featureReaders = threads > 0 ? new FeatureReaders(databaseOf(options.knex), threads) : undefined;
  const activities = poolActivities(options.pool, {
    knex: options.knex,
    backend: options.backend,
    tfjsBackend: options.backend?.name ?? null,
    project: options.project,
    dataRoots: options.dataRoots ?? loadConfig().dataRoots,
    featureReaders,
  });
  const workerOptions: WorkerOptions = {
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    activities,
    maxConcurrentActivityTaskExecutions: activityConcurrency(options.pool, options.maxConcurrentActivities),
    // On shutdown, running activities get this long to finish before they are
    // cancelled (a cancelled partition or training is retried; a finished one is not).
    shutdownGraceTime: '30s',
    // Heartbeats reach the server at least every 5 s (not 80% of the heartbeat timeout,
    // 24 s for a partition): a cancel rides back on a heartbeat's answer, so a cancelled
    // run's activities hear it within seconds.
    maxHeartbeatThrottleInterval: '5s',
    // Metrics and log attributes at every activity's boundary (workers/activity-observer.ts).
    interceptors: { activity: [activityObserver()] },
  };
  if (options.pool === 'cpu') {
    if (options.workflowBundle) workerOptions.workflowBundle = options.workflowBundle;
    else {
      workerOptions.workflowsPath = WORKFLOWS_PATH;
      workerOptions.bundlerOptions = WORKFLOW_BUNDLER_OPTIONS;
    }
  }
  const worker = await Worker.create(workerOptions).catch(async (err: unknown) => {
    await featureReaders?.close();
    throw err;
  });
  return { worker, activities: Object.keys(activities).sort(), close: async () => featureReaders?.close() };
}

/** Activities a worker runs at once: FTI_WORKER_CONCURRENCY, else one training per GPU, four I/O-bound CPU activities. */
export function activityConcurrency(pool: Pool, configured: number | undefined): number {
  return configured ?? (pool === 'gpu' ? 1 : 4);
}

/**
 * The most database connections one activity holds at once: a dataset build's join
 * chunks, two at a time (a split is read back over one connection, whatever its
 * number of partitions); an ingest attempt's COPY transaction and its
 * rejects; batch scoring's write transaction and its cursor.
 */
const CONNECTIONS_PER_ACTIVITY = 3;

/**
 * The worker's pool: every activity running at once can hold all the connections it
 * needs, plus two for heartbeats' side queries (cancels, leases), so no activity
 * waits on another for a connection (no hold-and-wait at any concurrency).
 */
export function workerPoolSize(concurrency: number): number {
  return concurrency * CONNECTIONS_PER_ACTIVITY + 2;
}

/**
 * How a worker of this concurrency connects: its pool (above), and two limits on every
 * session. No statement outlives the longest activity that runs it (60 m start-to-close):
 * once Temporal has given up on an attempt, its SQL is gone too. A transaction left idle
 * for 10 minutes (its worker stopped, cut off, or hung between statements) is ended by
 * Postgres, so its locks go even when no retry comes to fence it. Lock waits are not
 * limited here: commits of one group queue on purpose; the waits that must stay short
 * (leases, aborts) set their own lock_timeout.
 */
export function workerKnexOptions(concurrency: number): { poolMax: number; statementTimeoutMs: number; idleInTransactionTimeoutMs: number } {
  return { poolMax: workerPoolSize(concurrency), statementTimeoutMs: 60 * 60_000, idleInTransactionTimeoutMs: 10 * 60_000 };
}

/**
 * Entry point of `fti worker cpu|gpu`: runs until SIGINT/SIGTERM, then drains and exits.
 * Logs one record a line (FTI_LOG_FORMAT, JSON by default) and, with a metrics port,
 * serves GET /metrics (ours and the Temporal SDK's).
 */
export async function runPoolWorker(pool: Pool, config: FtiConfig = loadConfig(), logger?: Logger): Promise<void> {
  const format = config.logFormat ?? 'json';
  routeConsole(format);
  const log = logger ?? workerLogger(`worker:${pool}`, format);
  // Before anything connects to Temporal: the Runtime is installed once per process.
  const metricsOn = config.workerMetricsPort !== undefined;
  const runtime = await installWorkerRuntime({ level: config.logLevel, format, metrics: metricsOn, log });
  let metrics: MetricsServer | undefined;
  if (metricsOn) {
    metrics = await startMetricsServer({ host: config.workerMetricsHost, port: config.workerMetricsPort ?? 0, registry: workerMetrics.registry, sdkMetricsUrl: runtime.sdkMetricsUrl });
    log(`metrics on ${metrics.url}`, { metricsUrl: metrics.url });
  }
  try {
    await runUntilStopped(pool, config, log, metrics?.url);
  } finally {
    await metrics?.close();
  }
}

async function runUntilStopped(pool: Pool, config: FtiConfig, log: Logger, metricsUrl: string | undefined): Promise<void> {
  const queue = taskQueue(pool, config.taskQueuePrefix);
  const backend = await loadBackend(pool, config.tfjsBackend);
  for (const reason of backend.skipped) log(`tfjs backend skipped: ${reason}`);
  log(`TensorFlow.js backend: ${backend.name} (${backend.package}) on ${backend.device}`);

  const project = await loadProject(config.definitionsModule);
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const concurrency = activityConcurrency(pool, config.workerConcurrency);
  const knex = createKnex({ url: databaseUrl(config, 'worker'), schema: config.schema, applicationName: `fti-worker-${pool}`, ...workerKnexOptions(concurrency) });
  try {
    const { worker, activities, close } = await createPoolWorker({
      pool,
      connection,
      namespace: config.temporalNamespace,
      taskQueue: queue,
      knex,
      backend,
      project,
      dataRoots: config.dataRoots,
      maxConcurrentActivities: concurrency,
    });
    log(`polling task queue ${queue}`, {
      namespace: config.temporalNamespace,
      address: config.temporalAddress,
      schema: config.schema,
      workflows: pool === 'cpu',
      activities,
      tfjsBackend: backend.name,
      definitions: config.definitionsModule,
      dataRoots: config.dataRoots,
      featureGroups: project.featureGroups.list().map((g) => `${g.name}@${g.version}`),
      ...(metricsUrl ? { metricsUrl } : {}),
    });
    // Worker.run() installs SIGINT/SIGTERM handlers: it stops polling, lets running
    // activities finish (or time out) and then resolves.
    try {
      await worker.run();
    } finally {
      await close();
    }
    log('stopped cleanly');
  } finally {
    await knex.destroy();
    await connection.close();
  }
}
