/**
 * Real worker processes for tests that prove the entry points themselves or kill a
 * worker mid-flight, pointed at the suite's schema and task queues. GPU workers are
 * forced onto WebGPU, so the GPU code path runs even on a machine whose only Vulkan
 * device is Mesa's software lavapipe (where the worker would otherwise choose WASM).
 */
import { inject } from 'vitest';
import { REPO_ROOT, spawnWorkerProcess, type WorkerProcess } from '../../cli/services/worker-process.ts';
import type { Pool } from '../../core/task-queues.ts';
import { roleUrl } from './services.ts';

export { REPO_ROOT, type WorkerProcess };

export function spawnWorker(pool: Pool, env: { prefix: string; schema: string; extra?: Record<string, string> }): WorkerProcess {
  return spawnWorkerProcess(pool, {
    env: {
      ...process.env,
      DATABASE_URL: roleUrl(env.schema, 'worker'),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: 'default',
      FTI_SCHEMA: env.schema,
      FTI_TASK_QUEUE_PREFIX: env.prefix,
      ...(pool === 'gpu' ? { FTI_TFJS_BACKEND: 'webgpu' } : {}),
      ...env.extra,
    },
  });
}
