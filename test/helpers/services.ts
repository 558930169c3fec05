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
import { embeddedRolePasswords, embeddedRoleUrl } from '../../core/config.ts';
import type { DbRole } from '../../core/db-roles.ts';
import { createKnex, dropSchemaAndRoles, migrate, provisionRoles } from '../../registry/db/index.ts';
import { createPoolWorker } from '../../workers/worker.ts';

export const NAMESPACE = 'default';

export function uniqueId(label: string): string {
  return `${label}_${crypto.randomBytes(4).toString('hex')}`;
}

export interface TestDb {
  /** As the suite's worker role: what workers, activities and the CLI connect as. */
  knex: Knex;
  schema: string;
  /** The worker role's URL. */
  url: string;
  /** Another role's URL (the serving role for `fti serve`, the owner for migrations). */
  urlFor(role: DbRole): string;
  close(): Promise<void>;
}

/** A role's URL for a suite's schema (createTestDb provisions them with these passwords). */
export function roleUrl(schema: string, role: DbRole): string {
  return embeddedRoleUrl(inject('adminDatabaseUrl'), schema, role);
}

/**
 * A fresh schema on the shared test Postgres, run as in a deployment: its three
 * roles provisioned (registry/db/roles.ts), migrated by the owner, and used by the
 * suite as the worker role. `close()` drops the schema and the roles.
 */
export async function createTestDb(label: string): Promise<TestDb> {
  const adminUrl = inject('adminDatabaseUrl');
  const schema = uniqueId(`t_${label}`).toLowerCase();
  const admin = createKnex({ url: adminUrl, schema, poolMax: 1, applicationName: `fti-test-admin-${label}` });
  await provisionRoles(admin, schema, embeddedRolePasswords(schema));
  const owner = createKnex({ url: roleUrl(schema, 'owner'), schema, poolMax: 1, applicationName: `fti-test-migrate-${label}` });
  try {
    await migrate(owner, schema);
  } finally {
    await owner.destroy();
  }
  const url = roleUrl(schema, 'worker');
  const knex = createKnex({ url, schema, applicationName: `fti-test-${label}` });
  return {
    knex,
    schema,
    url,
    urlFor: (role) => roleUrl(schema, role),
    close: async () => {
      await knex.destroy();
      try {
        await dropSchemaAndRoles(admin, schema);
      } finally {
        await admin.destroy();
      }
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
    dataRoots = [],
    maxConcurrentActivities,
  }: {
    prefix: string;
    knex: Knex;
    backend?: LoadedBackend | null;
    queue?: string;
    project?: FtiProject;
    /** FTI_DATA_ROOTS of this worker: where a run's source file may be (default: none). */
    dataRoots?: string[];
    /** FTI_WORKER_CONCURRENCY of this worker (default: the pool's). */
    maxConcurrentActivities?: number;
  },
): Promise<RunningWorker> {
  const connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  const { worker, close } = await createPoolWorker({
    pool,
    connection,
    namespace: NAMESPACE,
    taskQueue: queue ?? taskQueue(pool, prefix),
    knex,
    backend,
    project,
    dataRoots,
    maxConcurrentActivities,
    workflowBundle: { codePath: inject('workflowBundlePath') },
  });
  const running = worker.run();
  return {
    worker,
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await close();
      await connection.close();
    },
  };
}
