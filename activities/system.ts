/**
 * System-check activities: each worker pool says who it is; the CPU pool records
 * the pair in Postgres. `describeWorker` is registered on both pools under the same
 * name; the workflow picks the pool by task queue.
 */
import os from 'node:os';
import { activityInfo } from '@temporalio/activity';
import type { WorkerInfo } from '../core/system-check.ts';
import type { Pool } from '../core/task-queues.ts';
import type { SystemCheck, SystemCheckStore } from '../registry/db/index.ts';
import { workflowIdOfActivity } from './context.ts';

export function createWorkerInfoActivities({ pool, tfjsBackend }: { pool: Pool; tfjsBackend: string | null }) {
  return {
    async describeWorker(): Promise<WorkerInfo> {
      return { pool, taskQueue: activityInfo().taskQueue, hostname: os.hostname(), pid: process.pid, tfjsBackend };
    },
  };
}

export function createSystemCheckActivities({ checks }: { checks: SystemCheckStore }) {
  return {
    async recordSystemCheck(input: { cpuWorker: WorkerInfo; gpuWorker: WorkerInfo }): Promise<Pick<SystemCheck, 'id' | 'workflowId'>> {
      const check = await checks.record({ workflowId: workflowIdOfActivity(), ...input });
      return { id: check.id, workflowId: check.workflowId };
    },
  };
}
