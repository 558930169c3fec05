import { ApplicationFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { createSystemCheckActivities, createWorkerInfoActivities } from '../activities/system.ts';
import { FailureType } from '../core/errors.ts';
import { queuePrefix, taskQueue } from '../core/task-queues.ts';
import type { WorkerInfo } from '../registry/system-checks.ts';

type WorkerInfoActivities = ReturnType<typeof createWorkerInfoActivities>;
type SystemCheckActivities = ReturnType<typeof createSystemCheckActivities>;

export type SystemCheckInput = Record<string, never>;

export interface SystemCheckResult {
  checkId: number;
  cpuWorker: WorkerInfo;
  gpuWorker: WorkerInfo;
}

/** The task queues of this deployment, derived from the queue the workflow runs on. */
export function poolQueues(): { cpu: string; gpu: string } {
  const own = workflowInfo().taskQueue;
  const prefix = queuePrefix(own);
  if (prefix === undefined) {
    throw ApplicationFailure.nonRetryable(
      `workflows run on a task queue named <prefix>fti-cpu; this one runs on ${own}`,
      FailureType.WrongTaskQueue,
    );
  }
  return { cpu: taskQueue('cpu', prefix), gpu: taskQueue('gpu', prefix) };
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
