import { Client, Connection } from '@temporalio/client';
import { Argument, InvalidArgumentError, type Command } from 'commander';
import { loadConfig } from '../../core/config.ts';
import { taskQueue, type Pool } from '../../core/task-queues.ts';
import { runPoolWorker } from '../../workers/worker.ts';
import { systemCheck } from '../../workflows/index.ts';

export function registerWorkerCommands(program: Command): void {
  program
    .command('worker')
    .description('run a worker: cpu polls fti-cpu (workflows + CPU activities), gpu polls fti-gpu (training)')
    .addArgument(new Argument('<pool>', 'worker pool').choices(['cpu', 'gpu']))
    .option('--metrics-port <port>', 'serve Prometheus metrics (ours and the Temporal SDK\'s) on GET /metrics at this port, 0 for a free one (default: FTI_WORKER_METRICS_PORT, else none)', parsePort)
    .action(async (pool: Pool, opts: { metricsPort?: number }) => {
      const config = loadConfig();
      await runPoolWorker(pool, opts.metricsPort === undefined ? config : { ...config, workerMetricsPort: opts.metricsPort });
    });

  program
    .command('check')
    .description('run the systemCheck workflow: one activity on each pool and a row in Postgres')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }) => {
      const config = loadConfig();
      const connection = await Connection.connect({ address: config.temporalAddress });
      try {
        const client = new Client({ connection, namespace: config.temporalNamespace });
        const result = await client.workflow.execute(systemCheck, {
          taskQueue: taskQueue('cpu', config.taskQueuePrefix),
          workflowId: `system-check-${Date.now()}`,
          args: [{}],
        });
        if (opts.json) console.log(JSON.stringify(result));
        else {
          console.log(`check #${result.checkId}: ok`);
          for (const w of [result.cpuWorker, result.gpuWorker]) {
            console.log(`  ${w.pool}: ${w.taskQueue} on ${w.hostname} pid ${w.pid}, tfjs ${w.tfjsBackend ?? 'none'}`);
          }
        }
      } finally {
        await connection.close();
      }
    });
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('a port number from 0 to 65535');
  return port;
}
