/** The real `fti` entry point in a process of its own, pointed at the suite's Temporal queues (and schema). */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { inject } from 'vitest';
import { REPO_ROOT } from './processes.ts';
import { roleUrl } from './services.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runFti(args: string[], env: { prefix: string; schema?: string; timeoutMs?: number }): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(REPO_ROOT, 'cli', 'main.ts'), ...args],
      {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: inject('temporalAddress'),
          TEMPORAL_NAMESPACE: 'default',
          FTI_TASK_QUEUE_PREFIX: env.prefix,
          // The CLI connects as the suite's worker role, as `fti dev` hands it.
          DATABASE_URL: roleUrl(env.schema ?? 'fti', 'worker'),
          ...(env.schema ? { FTI_SCHEMA: env.schema } : {}),
        },
        timeout: env.timeoutMs ?? 60_000,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs `fti … --json` and parses stdout (with --json it holds one JSON document); throws with stderr on a non-zero exit. */
export async function runFtiJson<T>(args: string[], env: { prefix: string; schema?: string }): Promise<T> {
  const result = await runFti([...args, '--json'], env);
  if (result.code !== 0) throw new Error(`fti ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}
