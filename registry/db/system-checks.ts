/** The rows `fti check` writes: proof that both worker pools and Postgres answer. */
import type { Knex } from 'knex';
import type { WorkerInfo } from '../../core/system-check.ts';

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

export class SystemCheckStore {
  private readonly knex: Knex;

  constructor({ knex }: { knex: Knex }) {
    this.knex = knex;
  }

  /** Idempotent per workflow: an activity retry returns the row the first attempt wrote. */
  async record(input: { workflowId: string; cpuWorker: WorkerInfo; gpuWorker: WorkerInfo }): Promise<SystemCheck> {
    const [row] = await this.knex<SystemCheckRow>('system_checks')
      .insert({ workflow_id: input.workflowId, cpu_worker: input.cpuWorker, gpu_worker: input.gpuWorker })
      .onConflict('workflow_id')
      .merge(['workflow_id'])
      .returning('*');
    if (!row) throw new Error('insert into system_checks returned no row');
    return toSystemCheck(row);
  }

  async get(workflowId: string): Promise<SystemCheck | undefined> {
    const row = await this.knex<SystemCheckRow>('system_checks').where({ workflow_id: workflowId }).first();
    return row ? toSystemCheck(row) : undefined;
  }
}
