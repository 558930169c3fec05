import type { Knex } from 'knex';

export interface WorkerInfo {
  pool: 'cpu' | 'gpu';
  taskQueue: string;
  hostname: string;
  pid: number;
  tfjsBackend: string | null;
}

export interface SystemCheck {
  id: number;
  workflowId: string;
  cpuWorker: WorkerInfo;
  gpuWorker: WorkerInfo;
  createdAt: Date;
}

interface SystemCheckRow {
  id: number;
  workflow_id: string;
  cpu_worker: WorkerInfo;
  gpu_worker: WorkerInfo;
  created_at: Date;
}

function toSystemCheck(row: SystemCheckRow): SystemCheck {
  return { id: row.id, workflowId: row.workflow_id, cpuWorker: row.cpu_worker, gpuWorker: row.gpu_worker, createdAt: row.created_at };
}

/** Idempotent per workflow: an activity retry returns the row the first attempt wrote. */
export async function recordSystemCheck(
  knex: Knex,
  input: { workflowId: string; cpuWorker: WorkerInfo; gpuWorker: WorkerInfo },
): Promise<SystemCheck> {
  const [row] = await knex<SystemCheckRow>('system_checks')
    .insert({ workflow_id: input.workflowId, cpu_worker: input.cpuWorker, gpu_worker: input.gpuWorker })
    .onConflict('workflow_id')
    .merge(['workflow_id'])
    .returning('*');
  if (!row) throw new Error('insert into system_checks returned no row');
  return toSystemCheck(row);
}

export async function getSystemCheck(knex: Knex, workflowId: string): Promise<SystemCheck | undefined> {
  const row = await knex<SystemCheckRow>('system_checks').where({ workflow_id: workflowId }).first();
  return row ? toSystemCheck(row) : undefined;
}
