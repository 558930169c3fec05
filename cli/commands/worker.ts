import { Client, Connection } from '@temporalio/client';
import { Argument, type Command } from 'commander';
import { loadConfig } from '../../core/config.ts';
import { taskQueue, type Pool } from '../../core/task-queues.ts';
import { runPoolWorker } from '../../workers/worker.ts';
import { systemCheck } from '../../workflows/index.ts';

export function registerWorkerCommands(program: Command): void {
  program
    .command('worker')
    .description('run a worker: cpu polls fti-cpu (workflows + CPU activities), gpu polls fti-gpu (training)')
    .addArgument(new Argument('<pool>', 'worker pool').choices(['cpu', 'gpu']))
    .action(async (pool: Pool) => {
      await runPoolWorker(pool);
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
