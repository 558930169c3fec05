/**
 * Cancelling each pipeline mid-run (real Temporal + Postgres): the run ends CANCELLED
 * within seconds, its statements stop in Postgres (even one blocked on a lock, which
 * only pg_cancel_backend ends), and it leaves no staging table, scratch table, lease,
 * checkpoint or half-written prediction partition behind.
 */
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { progressQuery, type PipelineProgress } from '../../core/progress.ts';
import project, { flightDelays } from '../../examples/flights/definitions.ts';
import { loadBackend } from '../../ml/backend.ts';
import { FeatureStore, groupTables } from '../../registry/feature-store/index.ts';
import { ModelRegistry } from '../../registry/models/index.ts';
import { PredictionStore } from '../../registry/predictions/index.ts';
import { batchInference, featurePipeline, ftiPipeline, trainingPipeline } from '../../workflows/index.ts';
import { ingestFlights } from '../helpers/flights.ts';
import { registerModelVersion } from '../helpers/models.ts';
import { until } from '../helpers/serving.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from '../helpers/services.ts';

// Two weeks of flights in the store (about 110k departures).
const window = { start: '2001-01-03T00:00:00.000Z', end: '2001-01-17T00:00:00.000Z' };
const CANCELLED_WITHIN_MS = 10_000;
// The chain waits for its child to finish cancelling (its abort included), and the abort
// may wait for a worker slot held by a partition still decoding a row group.
const CHAIN_CANCELLED_WITHIN_MS = 25_000;

describe('cancelling each pipeline mid-run (real Temporal + Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let cpu: RunningWorker;
  let gpu: RunningWorker;
  let store: FeatureStore;

  beforeAll(async () => {
    db = await createTestDb('cancel');
    temporal = await createTestTemporal('cancel');
    const backend = await loadBackend('cpu', 'wasm');
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
    gpu = await startInProcessWorker('gpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
    store = new FeatureStore({ knex: db.knex });
    await ingestFlights(temporal, window);
    await registerModelVersion(db.knex, backend.tf, { model: 'cancel_scorer', view: flightDelays, ...window, seed: 1, epochs: 0 });
    await new ModelRegistry({ knex: db.knex }).setAlias('cancel_scorer', 'champion', 1);
  });

  afterAll(async () => {
    await gpu?.stop();
    await cpu?.stop();
    await temporal?.close();
    await db?.close();
  });

  const count = async (query: string, bindings: Knex.RawBinding[] = []): Promise<number> => ((await db.knex.raw(query, bindings)) as { rows: Array<{ n: number }> }).rows[0]?.n ?? -1;
  const progressOf = (handle: WorkflowHandle) => handle.query(progressQuery).catch((): PipelineProgress | undefined => undefined);
  /** Our schema's sessions (other suites share the server) running a statement that mentions `text`. */
  const activeStatements = (text: string) =>
    count(`select count(*)::int as n from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() and query like '%' || ? || '%' and query not like '%pg_stat_activity%'`, [text]);

  /** Cancels and expects the run to end CANCELLED within the limit; returns how long it took. */
  async function cancelled(handle: WorkflowHandle, withinMs = CANCELLED_WITHIN_MS): Promise<number> {
    const started = Date.now();
    await handle.cancel();
    const outcome = await handle.result().then(
      () => 'completed',
      (err: unknown) => err,
    );
    const took = Date.now() - started;
    expect(outcome).toBeInstanceOf(WorkflowFailedError);
    expect((outcome as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    expect((await handle.describe()).status.name).toBe('CANCELLED');
    expect(took).toBeLessThan(withinMs);
    return took;
  }

  it('a feature run mid-COPY: CANCELLED, its commit failed, its table and leases gone', async () => {
    const group = await store.group('flights', 2);
    const handle = await temporal.client.workflow.start(featurePipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('cancel-features'),
      args: [{ featureGroup: 'flights', start: '2001-02-01T00:00:00Z', end: '2001-12-01T00:00:00Z', parallelism: 2 }],
    });
    // Rows are being staged: the attempt's table exists and holds some.
    const commitId = await until(async () => (await store.commits(group)).find((c) => c.status === 'staging')?.id, (id) => id !== undefined, 60_000);
    const table = groupTables('flights', 2).commit(commitId as number);
    await until(() => count('select count(*)::int as n from ??', [table]).catch(() => 0), (n) => n > 0, 60_000);

    const took = await cancelled(handle);
    console.log(`feature run cancelled in ${took} ms`);
    const [attempt] = (await store.commits(group)).filter((c) => c.id === commitId);
    expect(attempt).toMatchObject({ status: 'failed' });
    expect(await count(`select count(*)::int as n from pg_tables where schemaname = ? and tablename = ?`, [db.schema, table])).toBe(0);
    await until(() => activeStatements(table), (n) => n === 0, 10_000);
    // The partition leases of this commit (keyed by commit and schema, as registry/feature-store/staging.ts takes them).
    expect(await count(`select count(*)::int as n from pg_locks where locktype = 'advisory' and classid = (hashtext(? || current_schema()) & 2147483647)::oid`, [`fti.partition:${commitId}@`])).toBe(0);
  });

  it('a training run whose dataset join is blocked on a lock: CANCELLED, the join cancelled in Postgres, no dataset or scratch table left', async () => {
    const holder = await db.knex.transaction();
    const held = groupTables('airport_delays', 3).offline;
    try {
      await holder.raw('lock table ?? in access exclusive mode', [held]);
      const handle = await temporal.client.workflow.start(trainingPipeline, {
        taskQueue: temporal.cpuQueue,
        workflowId: uniqueId('cancel-dataset'),
        args: [{ featureView: 'flight_delays', model: 'cancel_dataset', params: { hiddenUnits: [4], epochs: 1 }, ...window }],
      });
      const waiting = () => count(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%td_joining_%' and query not like '%pg_stat_activity%'`);
      await until(waiting, (n) => n > 0, 60_000);

      const took = await cancelled(handle);
      console.log(`training run (dataset build) cancelled in ${took} ms`);
      // The lock is still held: only a cancel in Postgres ends the waiting statement.
      await until(waiting, (n) => n === 0, 15_000);
      await holder.rollback();
      await until(() => count(`select count(*)::int as n from pg_tables where schemaname = ? and tablename like 'td\\_joining\\_%'`, [db.schema]), (n) => n === 0, 10_000);
      expect(await count(`select count(*)::int as n from training_datasets where workflow_id = ?`, [handle.workflowId])).toBe(0);
      expect(await count(`select count(*)::int as n from models where name = 'cancel_dataset'`)).toBe(0);
    } finally {
      if (!holder.isCompleted()) await holder.rollback();
    }
  });

  it('a training run mid-epoch: CANCELLED once the trainer stopped, no version registered, its checkpoint dropped', async () => {
    const handle = await temporal.client.workflow.start(trainingPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('cancel-train'),
      args: [{ featureView: 'flight_delays', model: 'cancel_train', params: { hiddenUnits: [64, 32], epochs: 200, batchSize: 256 }, ...window }],
    });
    await until(() => progressOf(handle), (p) => p?.stage === 'train' && (p.details as { epoch?: number } | undefined)?.epoch !== undefined, 90_000);

    const took = await cancelled(handle);
    console.log(`training run (epochs) cancelled in ${took} ms`);
    expect(await count(`select count(*)::int as n from models where name = 'cancel_train'`)).toBe(0);
    expect(await count(`select count(*)::int as n from training_checkpoints where run_key like ?`, [`${handle.workflowId}/%`])).toBe(0);
  });

  it('a batch inference run mid-partition: CANCELLED, every partition whole or empty, the run failed', async () => {
    const predictions = new PredictionStore({ knex: db.knex });
    const runId = uniqueId('cancel-batch');
    const handle = await temporal.client.workflow.start(batchInference, {
      taskQueue: temporal.cpuQueue,
      workflowId: runId,
      args: [{ model: 'cancel_scorer', ...window, partitions: 8, parallelism: 2 }],
    });
    await until(() => progressOf(handle), (p) => p?.stage === 'predict' && p.done >= 1, 90_000);

    const took = await cancelled(handle);
    console.log(`batch inference cancelled in ${took} ms`);
    await until(() => activeStatements(runId), (n) => n === 0, 10_000);
    const run = await until(() => predictions.run(runId), (r) => r.status === 'failed', 10_000);
    expect(run.status).toBe('failed');
    // One statement, one snapshot: a partition that commits meanwhile (an attempt that
    // finished before its cancel arrived) is seen whole or not at all.
    const { rows: partitions } = (await db.knex.raw(
      `select p.partition, p.status, p.rows, p.spine_rows,
              (select count(*)::int from predictions x where x.run_id = p.run_id and x.event_time >= p.window_start and x.event_time < p.window_end) as stored
       from prediction_run_partitions p where p.run_id = ? order by p.partition`,
      [runId],
    )) as { rows: Array<{ partition: number; status: string; rows: number | null; spine_rows: number; stored: number }> };
    expect(partitions).toHaveLength(8);
    expect(partitions.some((p) => p.status === 'done')).toBe(true);
    expect(partitions.some((p) => p.status !== 'done')).toBe(true);
    for (const p of partitions) {
      console.log(`partition ${p.partition}: ${p.status}, ${p.rows ?? 0} rows recorded, ${p.stored} stored`);
      expect(p.stored).toBe(p.status === 'done' ? Number(p.rows) : 0);
      if (p.status === 'done') expect(Number(p.rows)).toBe(Number(p.spine_rows));
    }
  });

  it('the whole chain mid-features: the chain and its children end CANCELLED, the flights run’s commit failed and its table gone', async () => {
    const group = await store.group('flights', 2);
    const before = new Set((await store.commits(group)).map((c) => c.id));
    const handle = await temporal.client.workflow.start(ftiPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('cancel-chain'),
      args: [
        {
          features: { groups: ['flights', 'airport_delays'], start: '2001-03-01T00:00:00Z', end: '2001-12-01T00:00:00Z' },
          training: { featureView: 'flight_delays', model: 'cancel_chain', params: { hiddenUnits: [4], epochs: 1 } },
          inference: { start: '2001-11-01T00:00:00Z', end: '2001-11-02T00:00:00Z' },
        },
      ],
    });
    const commitId = await until(async () => (await store.commits(group)).find((c) => !before.has(c.id) && c.status === 'staging')?.id, (id) => id !== undefined, 60_000);
    // Mid-features: the child is ingesting (past its plan, whose commit row comes before its table is ready).
    const child = temporal.client.workflow.getHandle(`${handle.workflowId}/features:flights`);
    await until(() => progressOf(child), (p) => p?.stage === 'ingest', 60_000);

    const took = await cancelled(handle, CHAIN_CANCELLED_WITHIN_MS);
    console.log(`chain cancelled in ${took} ms`);
    const children: string[] = [];
    for await (const execution of temporal.client.workflow.list({ query: `WorkflowId STARTS_WITH "${handle.workflowId}/"` })) {
      children.push(`${execution.type}:${(await temporal.client.workflow.getHandle(execution.workflowId).describe()).status.name}`);
    }
    // Every child starts with the chain; those waiting for the flights' commit end CANCELLED too, having computed nothing.
    expect(children.sort()).toEqual(['featurePipeline:CANCELLED', 'featurePipeline:CANCELLED', 'trainingPipeline:CANCELLED']);
    expect(await count(`select count(*)::int as n from feature_commits where workflow_id = ?`, [`${handle.workflowId}/features:airport_delays`])).toBe(0);
    expect(await count(`select count(*)::int as n from training_datasets where workflow_id like ?`, [`${handle.workflowId}/%`])).toBe(0);
    expect(await count(`select count(*)::int as n from models where name = 'cancel_chain'`)).toBe(0);
    const attempt = await until(async () => (await store.commits(group)).find((c) => c.id === commitId), (c) => c?.status === 'failed', 10_000);
    expect(attempt?.status).toBe('failed');
    expect(await count(`select count(*)::int as n from pg_tables where schemaname = ? and tablename = ?`, [db.schema, groupTables('flights', 2).commit(commitId as number)])).toBe(0);
  });
});
