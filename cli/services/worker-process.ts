/**
 * A worker pool as a real process (`node --import tsx workers/<pool>.ts`), as
 * `fti dev`, the demo, the benchmarks and the crash tests run it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../core/config.ts';
import type { Pool } from '../../core/task-queues.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface WorkerProcess {
  pool: Pool;
  process: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM (the worker drains), then the exit code; SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL: a crash, for failure tests. */
  kill(): Promise<void>;
  /** Peak resident memory so far (Linux VmHWM), in MB. */
  peakRssMb(): number | undefined;
  /** Where it serves GET /metrics, once it said so (FTI_WORKER_METRICS_PORT set); undefined before or without. */
  metricsUrl(): string | undefined;
}

export interface SpawnOptions {
  env: NodeJS.ProcessEnv;
  /** Called with each line the worker prints. */
  onLine?: (line: string) => void;
  /** Own process group: a terminal Ctrl-C then reaches only our process, which stops the worker in order. */
  detached?: boolean;
}

export function spawnWorkerProcess(pool: Pool, { env, onLine, detached = false }: SpawnOptions): WorkerProcess {
  // The heap limit bounds the worker's memory by configuration rather than by the data it sees.
  const heap = `--max-old-space-size=${loadConfig(env).workerHeapMb}`;
  const child = spawn(process.execPath, [heap, '--import', 'tsx', path.join(REPO_ROOT, 'workers', `${pool}.ts`)], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  let output = '';
  let partial = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    output += text;
    if (onLine) {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) onLine(line);
    }
    for (const l of listeners) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.once('exit', () => {
    for (const l of listeners) l();
  });
  const running = () => child.exitCode === null && child.signalCode === null;

  return {
    pool,
    process: child,
    output: () => output,
    waitFor: (pattern, timeoutMs = 120_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const match = output.match(pattern);
          if (match) {
            cleanup();
            resolve(match[0]);
          } else if (!running()) {
            cleanup();
            reject(new Error(`${pool} worker exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${output.slice(-4000)}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${pool} worker did not print ${pattern} within ${timeoutMs} ms:\n${output.slice(-4000)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      }),
    stop: async (graceMs = 30_000) => {
      if (!running()) return child.exitCode;
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.kill('SIGTERM');
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
    kill: async () => {
      if (running()) child.kill('SIGKILL');
      await exited;
    },
    // The start-up line carries it, in JSON or text format alike.
    metricsUrl: () => /"metricsUrl":"([^"]+)"/.exec(output)?.[1],
    peakRssMb: () => {
      try {
        const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
        const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
        return kb ? Math.round(Number(kb) / 1024) : undefined;
      } catch {
        return undefined;
      }
    },
  };
}

/** Spawns a worker and waits until it polls its task queue. */
export async function startWorkerProcess(pool: Pool, options: SpawnOptions): Promise<WorkerProcess> {
  const worker = spawnWorkerProcess(pool, options);
  await worker.waitFor(/polling task queue/);
  return worker;
}
