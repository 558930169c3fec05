/**
 * Starts the real services every suite talks to, once per `npm test`:
 *   - Postgres: DATABASE_URL when set (with FTI_ADMIN_DATABASE_URL, which may create
 *     roles), else a fresh embedded Postgres 17 on a free port;
 *   - a Temporal dev server (the real Temporal CLI, built once into the cache) on free ports;
 *   - one bundle of the workflow code, shared by every in-process CPU worker.
 * Suites isolate themselves with their own schema and task-queue prefix.
 * Nothing is downloaded here; a missing service is an error, never a skip.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { loadConfig } from '../core/config.ts';
import { startPostgres } from '../cli/services/postgres.ts';
import { freePort } from '../cli/services/ports.ts';
import { resolveTemporalCli } from '../cli/services/temporal-cli.ts';
import { startTemporalDevServer } from '../cli/services/temporal-server.ts';
import { WORKFLOW_BUNDLER_OPTIONS, WORKFLOWS_PATH } from '../workers/worker.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A connection that may create roles and schemas: each suite provisions its own (test/helpers/services.ts). */
    adminDatabaseUrl: string;
    temporalAddress: string;
    temporalUiUrl: string;
    workflowBundlePath: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const log = (line: string) => console.log(`[test services] ${line}`);
  const config = loadConfig();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-test-'));

  const [postgres, cliPath] = await Promise.all([
    startPostgres(config, { dataDir: path.join(scratch, 'pg'), port: await freePort(), ephemeral: true, provision: false, log }),
    resolveTemporalCli(config, { allowBuild: true, allowDownload: false, log }),
  ]);
  const [port, uiPort] = [await freePort(), await freePort()];
  const temporal = await startTemporalDevServer({ cliPath, port, uiPort, log });

  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, ...WORKFLOW_BUNDLER_OPTIONS, logger: quietLogger });
  const workflowBundlePath = path.join(scratch, 'workflow-bundle.js');
  fs.writeFileSync(workflowBundlePath, code);

  if (!postgres.adminUrl) throw new Error('the tests need a Postgres connection that may create roles: leave DATABASE_URL unset (embedded Postgres) or set FTI_ADMIN_DATABASE_URL too');
  project.provide('adminDatabaseUrl', postgres.adminUrl);
  project.provide('temporalAddress', temporal.address);
  project.provide('temporalUiUrl', temporal.uiUrl ?? '');
  project.provide('workflowBundlePath', workflowBundlePath);

  return async () => {
    await temporal.stop();
    await postgres.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  };
}

const noop = () => {};
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: (m: string) => console.warn(m), error: (m: string) => console.error(m) };
