/**
 * Per-suite isolation on the shared real services: a schema of the suite's own
 * (migrated), a task-queue prefix of its own, a Temporal client, and workers.
 */
import crypto from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { Knex } from 'knex';
import { inject } from 'vitest';
import { taskQueue, type Pool } from '../../core/task-queues.ts';
import { defineProject, type FtiProject } from '../../features/project.ts';
import type { LoadedBackend } from '../../ml/backend.ts';
import { createKnex, migrate } from '../../registry/db/index.ts';
import { createPoolWorker } from '../../workers/worker.ts';

export const NAMESPACE = 'default';

export function uniqueId(label: string): string {
  return `${label}_${crypto.randomBytes(4).toString('hex')}`;
}

export interface TestDb {
  knex: Knex;
  schema: string;
  url: string;
  close(): Promise<void>;
}

/** A fresh, migrated schema on the shared test Postgres. */
export async function createTestDb(label: string): Promise<TestDb> {
  const url = inject('databaseUrl');
  const schema = uniqueId(`t_${label}`).toLowerCase();
  const knex = createKnex({ url, schema, applicationName: `fti-test-${label}` });
  await migrate(knex, schema);
  return {
    knex,
    schema,
    url,
    close: async () => {
      await knex.raw('drop schema if exists ?? cascade', [schema]);
      await knex.destroy();
    },
  };
}

export interface TestTemporal {
  client: Client;
  /** Task-queue prefix of this suite: workflows go to `${prefix}fti-cpu`. */
  prefix: string;
  cpuQueue: string;
  gpuQueue: string;
  close(): Promise<void>;
}

export async function createTestTemporal(label: string): Promise<TestTemporal> {
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  const prefix = `${uniqueId(label)}-`;
  return {
    client: new Client({ connection, namespace: NAMESPACE }),
    prefix,
    cpuQueue: taskQueue('cpu', prefix),
    gpuQueue: taskQueue('gpu', prefix),
    close: () => connection.close(),
  };
}

export interface RunningWorker {
  worker: Worker;
  stop(): Promise<void>;
}

/** An in-process worker for one pool, on the suite's queue, running until stopped. */
export async function startInProcessWorker(
  pool: Pool,
  {
    prefix,
    knex,
    backend = null,
    queue,
    project = defineProject({ featureGroups: [] }),
  }: { prefix: string; knex: Knex; backend?: LoadedBackend | null; queue?: string; project?: FtiProject },
): Promise<RunningWorker> {
  const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  const { worker } = await createPoolWorker({
    pool,
    connection,
    namespace: NAMESPACE,
    taskQueue: queue ?? taskQueue(pool, prefix),
    knex,
    backend,
    project,
    workflowBundle: { codePath: inject('workflowBundlePath') },
  });
  const running = worker.run();
  return {
    worker,
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}
