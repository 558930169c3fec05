/**
 * Scaling: the same flights pipeline on generated flights of growing size (drawn from
 * the real 3M, bench/flights-generator.ts): feature pipeline (flights, then the airport
 * windows), the training dataset of Jan–Jul, training (a few small gradient-boosted
 * trees on the GPU pool, their rows capped by `maxRows`), and batch inference of June,
 * each timed and with its worker's peak RSS during it (the GPU worker's for training,
 * the CPU worker's for the rest). Every size runs on a fresh schema with its own
 * worker processes. `BENCH_SCALING_ROWS` picks the sizes (default 0.3M, 1M, 3M, 10M, 30M).
 *
 * Each time figure's baseline is the smallest size's time scaled by rows: a ratio near 1
 * is linear, above 1 worse than linear. The figures are also drawn (bench/plot.ts).
 */
import fs from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { startWorkerProcess, type WorkerProcess } from '../../cli/services/worker-process.ts';
import { taskQueue } from '../../core/task-queues.ts';
import { createKnex, migrate } from '../../registry/db/index.ts';
import { batchInference, featurePipeline, trainingPipeline } from '../../workflows/index.ts';
import { GENERATED_FLIGHTS_DIR, generatedFlights } from '../flights-generator.ts';
import { round, type BenchContext, type BenchPart, type Figure } from '../harness.ts';
import { activitySeconds } from './features.ts';

const DEFAULT_ROWS = [300_000, 1_000_000, 3_000_000, 10_000_000, 30_000_000];
const STAGES = ['feature_pipeline', 'training_dataset', 'training', 'batch_inference'] as const;
type Stage = (typeof STAGES)[number];

interface SizeRun {
  rows: number;
  seconds: Record<Stage, number>;
  rssMb: Record<Stage, number>;
}

const scalingPart: BenchPart = async (ctx) => {
  const sizes = (process.env.BENCH_SCALING_ROWS ?? DEFAULT_ROWS.join(','))
    .split(',')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0)
    .sort((a, b) => a - b);
  const runs: SizeRun[] = [];
  for (const rows of sizes) {
    const file = await generatedFlights(rows);
    ctx.log(`scaling: ${rows} generated flights`, { file });
    const run = await runSize(ctx, rows, file);
    ctx.log(`scaling: ${rows} rows done`, { seconds: run.seconds, rssMb: run.rssMb });
    runs.push(run);
  }
  const first = runs[0];
  if (!first) return [];
  return runs.flatMap((r) =>
    STAGES.flatMap((stage): Figure[] => {
      const linear = (first.seconds[stage] * r.rows) / first.rows;
      return [
        {
          name: `scaling_${stage}_${r.rows}`,
          value: round(r.seconds[stage], 2),
          unit: 's',
          rows: r.rows,
          baseline: `the ${first.rows}-row time scaled linearly by rows`,
          baseline_value: round(linear, 2),
          ratio: round(r.seconds[stage] / linear, 3),
          details: { stage, rows: r.rows, peakRssMb: r.rssMb[stage], of: `the ${workerOf(stage)} worker process (VmHWM, reset before the stage)` },
        },
        { name: `scaling_${stage}_rss_${r.rows}`, value: r.rssMb[stage], unit: 'MB', rows: r.rows, details: { stage, of: `peak RSS of the ${workerOf(stage)} worker during the stage` } },
      ];
    }),
  );
};

async function runSize(ctx: BenchContext, rows: number, file: string): Promise<SizeRun> {
  const schema = `fti_bench_scaling_${rows}`;
  const knex = createKnex({ url: ctx.databaseUrl, schema });
  await knex.raw('drop schema if exists ?? cascade', [schema]);
  await migrate(knex, schema);
  const { address } = await ctx.temporal();
  const prefix = `bench-scaling-${rows}-${Date.now()}-`;
  const env = { ...process.env, DATABASE_URL: ctx.databaseUrl, TEMPORAL_ADDRESS: address, FTI_SCHEMA: schema, FTI_TASK_QUEUE_PREFIX: prefix, FTI_DATA_ROOTS: GENERATED_FLIGHTS_DIR };
  const [cpu, gpu] = await Promise.all([startWorkerProcess('cpu', { env }), startWorkerProcess('gpu', { env })]);
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const cpuQueue = taskQueue('cpu', prefix);
  // Times one stage, with the workers' peak RSS reset before it; logged at once, so a size that fails later keeps it.
  const stage = async (name: string, run: () => Promise<unknown>): Promise<{ seconds: number; rssMb: number; gpuRssMb: number }> => {
    resetPeakRss(cpu);
    resetPeakRss(gpu);
    const t0 = performance.now();
    await run();
    const done = { seconds: (performance.now() - t0) / 1000, rssMb: cpu.peakRssMb() ?? Number.NaN, gpuRssMb: gpu.peakRssMb() ?? Number.NaN };
    ctx.log(`scaling: ${rows} rows, ${name}`, done);
    return done;
  };
  try {
    const features = await stage('feature pipeline', async () => {
      await client.workflow.execute(featurePipeline, { taskQueue: cpuQueue, workflowId: `${prefix}flights`, args: [{ featureGroup: 'flights', source: { kind: 'parquet', path: file, timeColumn: 'date' } }] });
      await client.workflow.execute(featurePipeline, { taskQueue: cpuQueue, workflowId: `${prefix}airport_delays`, args: [{ featureGroup: 'airport_delays' }] });
    });
    // The dataset's and the training's own times from the training run's history.
    let datasetSeconds = Number.NaN;
    let trainingSeconds = Number.NaN;
    const training = await stage('training pipeline', async () => {
      const handle = await client.workflow.start(trainingPipeline, {
        taskQueue: cpuQueue,
        workflowId: `${prefix}train`,
        args: [{ featureView: 'flight_delays', model: 'flight_delay', start: '2001-01-01T00:00:00Z', validationStart: '2001-05-25T00:00:00Z', testStart: '2001-06-01T00:00:00Z', end: '2001-07-01T00:00:00Z', params: { family: 'gbdt', trees: 5, maxLeaves: 15 } }],
      });
      await handle.result();
      const activities = activitySeconds(await handle.fetchHistory());
      datasetSeconds = activities['createTrainingDataset'] ?? Number.NaN;
      trainingSeconds = activities['trainModel'] ?? Number.NaN;
    });
    const inference = await stage('batch inference', () => client.workflow.execute(batchInference, { taskQueue: cpuQueue, workflowId: `${prefix}infer`, args: [{ model: 'flight_delay', version: 1, start: '2001-06-01T00:00:00Z', end: '2001-07-01T00:00:00Z' }] }));
    return {
      rows,
      seconds: { feature_pipeline: features.seconds, training_dataset: datasetSeconds, training: trainingSeconds, batch_inference: inference.seconds },
      // The CPU worker builds the dataset and the GPU worker trains, in the same stage.
      rssMb: { feature_pipeline: features.rssMb, training_dataset: training.rssMb, training: training.gpuRssMb, batch_inference: inference.rssMb },
    };
  } finally {
    await connection.close();
    await Promise.all([cpu.stop(), gpu.stop()]);
    await knex.raw('drop schema if exists ?? cascade', [schema]);
    await knex.destroy();
  }
}

function workerOf(stage: Stage): 'CPU' | 'GPU' {
  return stage === 'training' ? 'GPU' : 'CPU';
}

/** Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM) to its current RSS. */
function resetPeakRss(worker: WorkerProcess): void {
  const pid = worker.process.pid;
  if (pid) fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

export default scalingPart;
