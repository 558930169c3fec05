/**
 * Scale-out: the same feature run (all 3M flights, then the airport windows) with 1, 2
 * and 4 CPU worker processes polling one task queue. Temporal is the distributed engine:
 * partitions go to whichever worker polls, so every worker should take some, and on
 * this 2-core machine the wall time should be no worse with more workers (on more
 * machines, it is how a deployment grows). Each count runs on a fresh schema.
 */
import { round, type BenchPart, type Figure } from '../harness.ts';
import { runPipeline } from './features.ts';

const WORKER_COUNTS = [1, 2, 4];

const scaleoutPart: BenchPart = async (ctx) => {
  // Warm-up: one small run (caches, the worker's first start).
  await runPipeline(ctx, 'scaleout_warmup', { start: '2001-01-01T00:00:00Z', end: '2001-01-08T00:00:00Z' });
  const runs: Array<{ workers: number; seconds: number; partitionsByWorker: Record<string, number> }> = [];
  for (const workers of WORKER_COUNTS) {
    const run = await runPipeline(ctx, `scaleout_${workers}`, {}, workers);
    runs.push({ workers, seconds: run.seconds, partitionsByWorker: run.partitionsByWorker });
    ctx.log(`scale-out: ${workers} worker process(es)`, { seconds: round(run.seconds, 2), rows: run.rows, partitionsByWorker: run.partitionsByWorker });
  }
  const one = runs[0]?.seconds ?? Number.NaN;
  return runs.map(
    (r): Figure => ({
      name: `feature_pipeline_${r.workers}_workers`,
      value: round(r.seconds, 2),
      unit: 's',
      baseline: 'the same run with 1 worker process',
      baseline_value: round(one, 2),
      ratio: round(r.seconds / one, 3),
      details: {
        of: 'featurePipeline for flights (3M rows) then airport_delays, N CPU worker processes on one task queue',
        partitionsByWorker: r.partitionsByWorker,
        everyWorkerTookPartitions: Object.values(r.partitionsByWorker).every((n) => n > 0),
      },
    }),
  );
};

export default scaleoutPart;
