/**
 * Runs `temporal server start-dev`: a real Temporal server (SQLite persistence,
 * optional Web UI) as a child process, and waits until its frontend answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { waitFor } from './ports.ts';

export interface DevServerOptions {
  cliPath: string;
  port: number;
  /** Web UI port; ignored when headless. */
  uiPort?: number;
  headless?: boolean;
  /** Persist workflow histories across restarts (dev); omitted means in-memory (tests). */
  dbFile?: string;
  namespace?: string;
  log?: (line: string) => void;
}

export interface DevServer {
  address: string;
  uiUrl: string | undefined;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startTemporalDevServer(options: DevServerOptions): Promise<DevServer> {
  const log = options.log ?? (() => {});
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(options.port), '--log-level', 'error'];
  // Eager activity dispatch: an activity a workflow task schedules on the workflow's own
  // queue comes back with that task's completion to the worker that has a free slot,
  // instead of a round trip through matching. Every step of a pipeline starts sooner.
  args.push('--dynamic-config-value', 'system.enableActivityEagerExecution=true');
  // One partition per task queue: the dev server is one host, and with the default four a
  // task and the poll waiting for it may sit in different partitions, met only once one is
  // forwarded to the root partition. Every dispatch that is not eager or sticky (another
  // pool's activity, a child's first workflow task) waits on that.
  args.push('--dynamic-config-value', 'matching.numTaskqueueReadPartitions=1', '--dynamic-config-value', 'matching.numTaskqueueWritePartitions=1');
  if (options.headless) args.push('--headless');
  else if (options.uiPort) args.push('--ui-port', String(options.uiPort));
  if (options.dbFile) {
    fs.mkdirSync(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  if (options.namespace && options.namespace !== 'default') args.push('--namespace', options.namespace);

  // detached: its own process group, so a terminal Ctrl-C reaches our process only
  // and the server is stopped after the workers that use it.
  const child = spawn(options.cliPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const tail: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      tail.push(line);
      if (tail.length > 40) tail.shift();
    }
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited: string | undefined;
  child.on('exit', (code, signal) => {
    exited = `temporal server exited (code ${code}, signal ${signal}):\n${tail.join('\n')}`;
  });

  const address = `127.0.0.1:${options.port}`;
  const started = Date.now();
  await waitFor(
    `the Temporal dev server on ${address}`,
    async () => {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.getSystemInfo({});
        return true;
      } finally {
        await connection.close();
      }
    },
    { timeoutMs: 60_000, intervalMs: 250, failFast: () => exited },
  );
  const uiUrl = options.headless ? undefined : `http://localhost:${options.uiPort ?? options.port + 1000}`;
  log(`temporal: dev server on ${address} ready in ${Date.now() - started} ms${uiUrl ? `, Web UI at ${uiUrl}` : ''}`);

  return {
    address,
    uiUrl,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited !== undefined || child.exitCode !== null) return resolve();
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(killer);
          resolve();
        });
        child.kill('SIGINT');
      }),
  };
}
