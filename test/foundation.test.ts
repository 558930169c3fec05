import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureType } from '../core/errors.ts';
import { SystemCheckStore } from '../registry/db/index.ts';
import { systemCheck } from '../workflows/index.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';
import { spawnWorker, type WorkerProcess } from './helpers/processes.ts';

describe('foundation: real Temporal, real Postgres, two worker pools', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let cpu: RunningWorker;
  let gpu: WorkerProcess;

  beforeAll(async () => {
    db = await createTestDb('foundation');
    temporal = await createTestTemporal('foundation');
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex });
    // The GPU pool is the real entry point, in a process of its own.
    gpu = spawnWorker('gpu', { prefix: temporal.prefix, schema: db.schema });
    await gpu.waitFor(/polling task queue \S+fti-gpu/);
  });

  afterAll(async () => {
    await gpu?.kill();
    await cpu?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('the GPU worker logs its queue, its activities and the TensorFlow.js backend it loaded', () => {
    const out = gpu.output();
    expect(out).toContain(`polling task queue ${temporal.gpuQueue}`);
    expect(out).toMatch(/TensorFlow\.js backend: (tensorflow|webgpu) /);
    expect(out).toMatch(/"activities":\["describeWorker","trainModel"\]/);
  });

  it('a workflow runs one activity on fti-cpu, one on fti-gpu, and writes a row to Postgres', async () => {
    const workflowId = uniqueId('system-check');
    const result = await temporal.client.workflow.execute(systemCheck, {
      taskQueue: temporal.cpuQueue,
      workflowId,
      args: [{}],
    });
    expect(result.cpuWorker).toMatchObject({ pool: 'cpu', taskQueue: temporal.cpuQueue, pid: process.pid });
    expect(result.gpuWorker).toMatchObject({ pool: 'gpu', taskQueue: temporal.gpuQueue, pid: gpu.process.pid });
    expect(result.gpuWorker.pid).not.toBe(result.cpuWorker.pid);

    const row = await new SystemCheckStore({ knex: db.knex }).get(workflowId);
    expect(row).toBeDefined();
    expect(row?.id).toBe(result.checkId);
    expect(row?.gpuWorker.taskQueue).toBe(temporal.gpuQueue);
    expect(await db.knex('system_checks').count({ n: '*' }).first()).toEqual({ n: 1 });
  });

  it('a workflow started on a foreign task queue fails with a clear, non-retryable error', async () => {
    const queue = `${temporal.prefix}elsewhere`;
    const stray = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, queue });
    try {
      const failure = await temporal.client.workflow
        .execute(systemCheck, { taskQueue: queue, workflowId: uniqueId('stray'), args: [{}] })
        .catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(WorkflowFailedError);
      const cause = (failure as WorkflowFailedError).cause;
      expect(cause).toBeInstanceOf(ApplicationFailure);
      expect((cause as ApplicationFailure).type).toBe(FailureType.WrongTaskQueue);
      expect((cause as ApplicationFailure).message).toContain(queue);
    } finally {
      await stray.stop();
    }
  });

  it('the GPU worker stops cleanly on SIGTERM', async () => {
    const code = await gpu.stop();
    expect(code).toBe(0);
    expect(gpu.output()).toContain('stopped cleanly');
  });
});
