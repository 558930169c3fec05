/**
 * The flights example, all 3M rows, ingested once per bench process into the bench
 * schema through the real feature pipeline, with a CPU and a GPU worker process
 * serving it (and the training pipeline, for the parts that train).
 */
import { Client, Connection } from '@temporalio/client';
import { startWorkerProcess, type WorkerProcess } from '../cli/services/worker-process.ts';
import { taskQueue } from '../core/task-queues.ts';
import { featurePipeline } from '../workflows/index.ts';
import { settleStore, type BenchContext } from './harness.ts';

/** The flights the training benchmark's throughput figures train on (about 100k training rows), and the portable kit's split (portable/export.ts). */
export const THROUGHPUT_WEEK = { start: new Date('2001-03-01T00:00:00Z'), end: new Date('2001-03-08T00:00:00Z') };

export interface FlightsFixture {
  client: Client;
  cpuQueue: string;
  workers: WorkerProcess[];
}

let fixture: Promise<FlightsFixture> | undefined;

export function flightsFixture(ctx: BenchContext): Promise<FlightsFixture> {
  fixture ??= (async () => {
    const { address } = await ctx.temporal();
    const prefix = `bench-flights-${Date.now()}-`;
    const env = { ...process.env, DATABASE_URL: ctx.databaseUrl, TEMPORAL_ADDRESS: address, FTI_SCHEMA: ctx.schema, FTI_TASK_QUEUE_PREFIX: prefix };
    const workers = await Promise.all((['cpu', 'gpu'] as const).map((pool) => startWorkerProcess(pool, { env })));
    const connection = await Connection.connect({ address });
    const client = new Client({ connection });
    const cpuQueue = taskQueue('cpu', prefix);
    ctx.log('flights fixture: ingesting all 3M flights and the airport rolling delays');
    for (const featureGroup of ['flights', 'airport_delays']) {
      await client.workflow.execute(featurePipeline, { taskQueue: cpuQueue, workflowId: `${prefix}${featureGroup}`, args: [{ featureGroup }] });
    }
    await settleStore(ctx, 'the flights fixture');
    ctx.onClose(async () => {
      for (const w of workers) await w.stop();
      await connection.close();
    });
    return { client, cpuQueue, workers };
  })();
  return fixture;
}
