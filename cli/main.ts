/**
 * `fti`: dev services, migrations, workers; later issues add runs, schedules,
 * registry inspection and serving.
 */
import { Command } from 'commander';
import { registerCompactCommand } from './commands/compact.ts';
import { registerDemoCommand } from './commands/demo.ts';
import { registerDevCommands } from './commands/dev.ts';
import { registerGcCommand } from './commands/gc.ts';
import { registerModelCommands } from './commands/models.ts';
import { registerMonitorCommands } from './commands/monitor.ts';
import { registerRunCommands } from './commands/run.ts';
import { registerScheduleCommands } from './commands/schedule.ts';
import { registerServeCommands } from './commands/serve.ts';
import { registerWorkerCommands } from './commands/worker.ts';

const program = new Command('fti')
  .description('Feature / training / inference pipelines on Temporal, with a Postgres feature store and model registry')
  .showHelpAfterError()
  .enablePositionalOptions();

registerCompactCommand(program);
registerDevCommands(program);
registerDemoCommand(program);
registerGcCommand(program);
registerModelCommands(program);
registerMonitorCommands(program);
registerRunCommands(program);
registerScheduleCommands(program);
registerServeCommands(program);
registerWorkerCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(err instanceof Error ? `fti: ${err.message}` : err);
  process.exit(1);
});
