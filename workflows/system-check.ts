import { proxyActivities } from '@temporalio/workflow';
import type { createSystemCheckActivities, createWorkerInfoActivities } from '../activities/system.ts';
import { poolQueues } from './queues.ts';
import type { WorkerInfo } from '../core/system-check.ts';

type WorkerInfoActivities = ReturnType<typeof createWorkerInfoActivities>;
type SystemCheckActivities = ReturnType<typeof createSystemCheckActivities>;

export type SystemCheckInput = Record<string, never>;

export interface SystemCheckResult {
  checkId: number;
  cpuWorker: WorkerInfo;
  gpuWorker: WorkerInfo;
}

/**
 * Proves the deployment end to end: one activity on the CPU pool, one on the GPU
 * pool, and a row written to Postgres. `fti check` starts it.
 */
export async function systemCheck(_input: SystemCheckInput = {}): Promise<SystemCheckResult> {
  const queues = poolQueues();
  const options = { startToCloseTimeout: '30s', scheduleToStartTimeout: '2m' } as const;
  const onCpu = proxyActivities<WorkerInfoActivities & SystemCheckActivities>({ ...options, taskQueue: queues.cpu });
  const onGpu = proxyActivities<WorkerInfoActivities>({ ...options, taskQueue: queues.gpu });
  const [cpuWorker, gpuWorker] = await Promise.all([onCpu.describeWorker(), onGpu.describeWorker()]);
  const { id } = await onCpu.recordSystemCheck({ cpuWorker, gpuWorker });
  return { checkId: id, cpuWorker, gpuWorker };
}
