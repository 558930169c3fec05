/**
 * Batch inference on a month of flights (January 2001, ~500k spine rows) through the
 * real batchInference workflow and a real CPU worker process: point-in-time feature
 * read, signature check, predict, COPY into predictions. Beside it, measured in the
 * same run: a raw COPY of as many prediction rows (same columns) into a plain table.
 *
 * prepareFlightsMonth (shared with the online part) fills the bench schema once per
 * bench run: the month of flights and airport delays through the feature pipeline,
 * and a model version trained on the month's first week and registered with its
 * lineage, as the training pipeline registers one.
 * Baseline SQL is written out here on purpose: it is the yardstick.
 */
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client, Connection } from '@temporalio/client';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { startWorkerProcess, type WorkerProcess } from '../../cli/services/worker-process.ts';
import { taskQueue } from '../../core/task-queues.ts';
import { ModelRegistry } from '../../registry/models/index.ts';
import { PredictionStore } from '../../registry/predictions/index.ts';
import { flightDelays } from '../../examples/flights/definitions.ts';
import { loadBackend } from '../../ml/backend.ts';
import { registerModelVersion } from '../../test/helpers/models.ts';
import type { PartitionSeconds } from '../../activities/inference.ts';
import { batchInference, featurePipeline } from '../../workflows/index.ts';
import { cpuSample, cpuUsed, processCpuSeconds, type CpuUsed } from '../cpu.ts';
import { median, round, secondsFigure, settleStore, type BenchContext, type BenchPart } from '../harness.ts';

export const MONTH = { start: '2001-01-01T00:00:00.000Z', end: '2001-02-01T00:00:00.000Z' };
export const BENCH_MODEL = 'bench_flight_delay';
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const RAW_TABLE = 'bench_predictions_raw';

const inferencePart: BenchPart = async (ctx) => {
  await prepareFlightsMonth(ctx);
  const cluster = await startCluster(ctx, 'inference', ['cpu']);
  const store = new PredictionStore({ knex: ctx.knex });
  const runs: Array<{ seconds: number; rows: number; runId: string; stageSeconds?: PartitionSeconds; cpu: RunCpu }> = [];
  const backend = cluster.backend;
  try {
    // The first run pays for the worker's first model load and JIT: a warm-up.
    for (let i = 0; i <= RUNS; i++) {
      const runId = `${cluster.prefix}month-${i}`;
      const before = { worker: cluster.workerCpuSeconds(), used: cpuSample() };
      const t0 = performance.now();
      const result = await cluster.client.workflow.execute(batchInference, { taskQueue: cluster.queue, workflowId: runId, args: [{ model: BENCH_MODEL, ...MONTH }] });
      const seconds = (performance.now() - t0) / 1000;
      const cpu = runCpu(cpuUsed(before.used, cpuSample()), cluster.workerCpuSeconds() - before.worker);
      if (i > 0) runs.push({ seconds, rows: result.rows, runId, stageSeconds: result.stageSeconds, cpu });
      ctx.log(`inference run ${i}/${RUNS}${i === 0 ? ' (warm-up)' : ''}`, { seconds: round(seconds, 2), rows: result.rows, rejected: result.rowsRejected, version: result.version, stageSeconds: result.stageSeconds, cpu });
    }
  } finally {
    await cluster.close();
  }
  const rows = runs[0]?.rows ?? 0;
  const run = await store.run(runs[0]?.runId ?? '');
  const partitions = await store.partitions(run.runId);
  const baselineRuns = await rawCopy(ctx, rows);
  // So that the next part is not measured against autovacuum and a checkpoint catching up with the predictions just written.
  await settleStore(ctx, 'batch inference');
  const seconds = median(runs.map((r) => r.seconds));
  return [
    secondsFigure('batch_inference', runs.map((r) => r.seconds), { what: 'raw COPY of as many prediction rows into a plain table', samples: baselineRuns }, {
      rows,
      details: {
        includes: 'plan (alias resolution, spine count, partitions) + per partition: point-in-time feature read, signature check, predict, COPY into predictions + finish',
        rowsPerSecond: Math.round(rows / seconds),
        partitions: partitions.length,
        strategy: run.strategy,
        // Per stage, the partitions' seconds summed (they overlap: busy time, not wall time); medians over the runs.
        stageSeconds: Object.fromEntries((['read', 'score', 'write'] as const).map((stage) => [stage, round(median(runs.map((r) => r.stageSeconds?.[stage] ?? 0)), 2)])),
        // CPU seconds a run used (medians over the runs): the worker process (every thread)
        // and Postgres. Two cores are busy through most of a run, so less CPU is what
        // brings its wall time down; on a shared machine it also moves less than the wall time.
        cpuSeconds: Object.fromEntries((['worker', 'postgres', 'total'] as const).map((k) => [k, round(median(runs.map((r) => r.cpu[k])), 2)])),
        backend,
        worker: 'one CPU worker process (4 activity slots)',
      },
    }),
  ];
};

export default inferencePart;

let prepared: Promise<void> | undefined;

/** The month of flights and a champion model in the bench schema, once per bench run. */
export function prepareFlightsMonth(ctx: BenchContext): Promise<void> {
  prepared ??= prepare(ctx);
  return prepared;
}

async function prepare(ctx: BenchContext): Promise<void> {
  const registry = new ModelRegistry({ knex: ctx.knex });
  if ((await registry.listModels()).some((m) => m.name === BENCH_MODEL && m.aliases.champion !== undefined)) return;
  const t0 = performance.now();
  const cluster = await startCluster(ctx, 'prepare', ['cpu']);
  try {
    for (const featureGroup of ['flights', 'airport_delays']) {
      await cluster.client.workflow.execute(featurePipeline, { taskQueue: cluster.queue, workflowId: `${cluster.prefix}${featureGroup}`, args: [{ featureGroup, ...MONTH }] });
    }
  } finally {
    await cluster.close();
  }
  // Registered as the training pipeline registers (dataset, fitted signature, lineage),
  // trained one epoch on the month's first week: the bench measures scoring, not learning.
  const { tf } = await loadBackend('cpu');
  const version = await registerModelVersion(ctx.knex, tf, { model: BENCH_MODEL, view: flightDelays, start: MONTH.start, end: '2001-01-08T00:00:00.000Z', seed: 1, hiddenUnits: [64, 32], epochs: 1 });
  await registry.setAlias(BENCH_MODEL, 'champion', version.version);
  await settleStore(ctx, 'the flights month');
  ctx.log('bench flights month ready', { seconds: round((performance.now() - t0) / 1000, 1), model: BENCH_MODEL, version: version.version });
}

/** CPU seconds one run used: the worker process (every thread), Postgres, and both. */
interface RunCpu {
  worker: number;
  postgres: number;
  total: number;
}

function runCpu(used: CpuUsed, worker: number): RunCpu {
  return { worker: round(worker, 2), postgres: round(used.postgres, 2), total: round(worker + used.postgres, 2) };
}

interface Cluster {
  client: Client;
  prefix: string;
  queue: string;
  /** The TensorFlow.js backend the first worker loaded. */
  backend: string | undefined;
  /** CPU seconds the worker processes have used so far, every thread. */
  workerCpuSeconds(): number;
  close(): Promise<void>;
}

/** Worker processes of the given pools on the bench schema and a queue prefix of their own. */
export async function startCluster(ctx: BenchContext, label: string, pools: Array<'cpu' | 'gpu'>): Promise<Cluster> {
  const { address } = await ctx.temporal();
  const prefix = `bench-${label}-${Date.now()}-`;
  const env = { ...process.env, DATABASE_URL: ctx.databaseUrl, TEMPORAL_ADDRESS: address, FTI_SCHEMA: ctx.schema, FTI_TASK_QUEUE_PREFIX: prefix };
  const workers: WorkerProcess[] = await Promise.all(pools.map((pool) => startWorkerProcess(pool, { env })));
  const connection = await Connection.connect({ address });
  return {
    client: new Client({ connection }),
    prefix,
    queue: taskQueue('cpu', prefix),
    backend: /TensorFlow\.js backend: (\S+)/.exec(workers[0]?.output() ?? '')?.[1],
    workerCpuSeconds: () => workers.reduce((sum, w) => sum + processCpuSeconds(w.process.pid), 0),
    close: async () => {
      await connection.close();
      await Promise.all(workers.map((w) => w.stop()));
    },
  };
}

/** Seconds per run to COPY `rows` prediction rows (built in memory first) into a plain table. */
async function rawCopy(ctx: BenchContext, rows: number): Promise<number[]> {
  const chunks: string[] = [];
  let chunk = '';
  const t = Date.parse(MONTH.start);
  for (let i = 0; i < rows; i++) {
    chunk += `bench-raw-copy\t${BENCH_MODEL}\t1\t{"flight_id":${i}}\t${new Date(t + i * 5000).toISOString()}\t${Math.random()}\n`;
    if (chunk.length > 1 << 18) {
      chunks.push(chunk);
      chunk = '';
    }
  }
  if (chunk) chunks.push(chunk);
  const knex = ctx.knex;
  await knex.raw('drop table if exists ??', [RAW_TABLE]);
  // Same columns as predictions, no key: the cost of writing the rows and nothing else.
  await knex.raw('create table ?? (run_id text not null, model text not null, model_version integer not null, entity_key jsonb not null, event_time timestamptz not null, score double precision not null)', [RAW_TABLE]);
  const samples: number[] = [];
  try {
    for (let i = 0; i <= RUNS; i++) {
      await knex.raw('truncate ??', [RAW_TABLE]);
      const client = (await knex.client.acquireConnection()) as pg.PoolClient;
      const t0 = performance.now();
      try {
        await pipeline(Readable.from(chunks), client.query(copyFrom(`copy ${RAW_TABLE} from stdin`)));
      } finally {
        await knex.client.releaseConnection(client);
      }
      if (i > 0) samples.push((performance.now() - t0) / 1000);
    }
  } finally {
    await knex.raw('drop table if exists ??', [RAW_TABLE]);
  }
  return samples;
}

