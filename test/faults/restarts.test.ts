/**
 * Real restarts of the services a deployment depends on, with runs in flight. This file
 * starts services of its own (the suite's shared ones must never be restarted): a
 * Temporal dev server persisting to a db file, an embedded Postgres with its data in a
 * folder of its own, and a real CPU worker process pointed at both.
 *
 * Each scenario starts a feature run (the flights of one day, from the 3M Parquet file)
 * and a batch inference run (a day of flights, three partitions) and holds their writes
 * on a table lock, so the ingest and every prediction partition are provably running
 * (their Postgres sessions wait on the lock) when the service goes down:
 *
 *   - Temporal is killed (SIGKILL) and started again on the same port and db file; the
 *     activities finish their work while it is down, and both runs complete after it
 *     is back, as the same executions, on the same worker process.
 *   - Postgres is shut down (fast: every session ends), left down for 25 s, and started
 *     again on the same port and data directory; the attempts that lost their sessions are retried, and
 *     both runs complete.
 *
 * Either way the feature group holds exactly the day's source rows, each once, from one
 * commit; and the prediction run holds exactly one prediction per spine row of its
 * window, and is completed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { freePort, isListening, waitFor } from '../../cli/services/ports.ts';
import { migrateStore, startPostgres, type PostgresHandle, type StartPostgresOptions } from '../../cli/services/postgres.ts';
import { resolveTemporalCli } from '../../cli/services/temporal-cli.ts';
import { startTemporalDevServer, type DevServer, type DevServerOptions } from '../../cli/services/temporal-server.ts';
import { spawnWorkerProcess, type WorkerProcess } from '../../cli/services/worker-process.ts';
import { loadConfig, type FtiConfig } from '../../core/config.ts';
import { progressQuery } from '../../core/progress.ts';
import { taskQueue } from '../../core/task-queues.ts';
import { FLIGHTS_3M_PARQUET } from '../../examples/flights/data.ts';
import { flightDelays } from '../../examples/flights/definitions.ts';
import { loadBackend } from '../../ml/backend.ts';
import { createKnex } from '../../registry/db/index.ts';
import { ModelRegistry } from '../../registry/models/index.ts';
import { PredictionStore } from '../../registry/predictions/index.ts';
import { batchInference, featurePipeline } from '../../workflows/index.ts';
import { registerModelVersion } from '../helpers/models.ts';
import { uniqueId } from '../helpers/services.ts';

interface Window {
  start: string;
  end: string;
}

/** The day the model is trained on and every batch inference run scores (setup). */
const SCORED: Window = { start: '2001-01-03T00:00:00.000Z', end: '2001-01-04T00:00:00.000Z' };
/** The days the feature runs in flight ingest: one per restart, neither overlapping SCORED. */
const INGESTED_ACROSS_TEMPORAL: Window = { start: '2001-01-08T00:00:00.000Z', end: '2001-01-09T00:00:00.000Z' };
const INGESTED_ACROSS_POSTGRES: Window = { start: '2001-01-10T00:00:00.000Z', end: '2001-01-11T00:00:00.000Z' };
const PARTITIONS = 3;
const NAMESPACE = 'default';

const POSTGRES_DOWN_MS = 25_000;
const log = (line: string) => console.log(`[restarts] ${line}`);

/**
 * The flights of a window as the source file has them, read here with hyparquet alone
 * (not through the project's sources): the row number (what the flights group keys
 * on) of every flight scheduled in the window and passing the group's expectations.
 */
let firstRowGroup: Array<Record<string, unknown>> | undefined;
async function sourceFlightIds(window: Window): Promise<{ inWindow: number; valid: number[] }> {
  if (!firstRowGroup) {
    const file = await asyncBufferFromFile(FLIGHTS_3M_PARQUET);
    const metadata = await parquetMetadataAsync(file);
    const rowEnd = Number(metadata.row_groups[0]?.num_rows ?? 0);
    await parquetRead({ file, metadata, compressors, rowStart: 0, rowEnd, rowFormat: 'object', columns: ['date', 'delay', 'distance', 'origin', 'destination'], onComplete: (rows) => (firstRowGroup = rows as Array<Record<string, unknown>>) });
  }
  const rows = firstRowGroup ?? [];
  const [start, end] = [Date.parse(window.start), Date.parse(window.end)];
  // The file is sorted by date: the window lies wholly inside the rows read.
  const last = rows.at(-1)?.date;
  if (!(last instanceof Date) || last.getTime() < end) throw new Error(`the window ${window.start}..${window.end} reaches past the first row group`);
  let inWindow = 0;
  const valid: number[] = [];
  rows.forEach((row, rowNumber) => {
    const t = (row.date as Date).getTime();
    if (t < start || t >= end) return;
    inWindow++;
    const delay = row.delay === null || row.delay === undefined ? null : Number(row.delay);
    const distance = row.distance === null || row.distance === undefined ? null : Number(row.distance);
    const ok = row.origin != null && row.destination != null && delay !== null && delay >= -120 && delay <= 3000 && distance !== null && distance >= 1 && distance <= 6000;
    if (ok) valid.push(rowNumber);
  });
  return { inWindow, valid };
}

describe('runs in flight survive real restarts of Temporal and of Postgres', () => {
  let scratch: string;
  let config: FtiConfig;
  let pgOptions: StartPostgresOptions;
  let postgres: PostgresHandle | undefined;
  let temporalOptions: DevServerOptions;
  let temporal: DevServer | undefined;
  let worker: WorkerProcess | undefined;
  let connection: Connection | undefined;
  let client: Client;
  let knex: Knex | undefined;
  let cpuQueue: string;
  let predictions: PredictionStore;
  /** flight_id of every spine row of SCORED: what each prediction run must score, once each. */
  let spine: number[];

  beforeAll(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-restarts-'));
    // The embedded Postgres runs as the postgres user when we are root: it must reach its data directory here.
    fs.chmodSync(scratch, 0o755);
    const schema = uniqueId('restarts').toLowerCase();
    const prefix = `${uniqueId('restarts')}-`;
    // Our own services whatever the environment says: never the suite's shared ones.
    config = { ...loadConfig(), databaseUrl: undefined, adminDatabaseUrl: undefined, schema, taskQueuePrefix: prefix };
    cpuQueue = taskQueue('cpu', prefix);

    pgOptions = { dataDir: path.join(scratch, 'pg'), port: await freePort(), ephemeral: false, provision: true, log };
    // One after the other: whatever has started is in hand for afterAll, whichever fails.
    postgres = await startPostgres(config, pgOptions);
    expect(postgres.started).toBe(true);
    const cliPath = await resolveTemporalCli(config, { allowBuild: true, allowDownload: false, log });
    await migrateStore(config, postgres);
    temporalOptions = { cliPath, port: await freePort(), headless: true, dbFile: path.join(scratch, 'temporal.sqlite'), log };
    temporal = await startTemporalDevServer(temporalOptions);

    worker = spawnWorkerProcess('cpu', {
      env: {
        ...process.env,
        DATABASE_URL: postgres.urls.worker,
        TEMPORAL_ADDRESS: temporal.address,
        TEMPORAL_NAMESPACE: NAMESPACE,
        FTI_SCHEMA: schema,
        FTI_TASK_QUEUE_PREFIX: prefix,
        FTI_TFJS_BACKEND: 'wasm',
        // The ingest and the three prediction partitions run at once.
        FTI_WORKER_CONCURRENCY: String(PARTITIONS + 1),
      },
    });
    connection = await Connection.connect({ address: temporal.address });
    client = new Client({ connection, namespace: NAMESPACE });
    knex = createKnex({ url: postgres.urls.worker, schema, applicationName: 'fti-test-restarts' });
    predictions = new PredictionStore({ knex });
    await worker.waitFor(/polling task queue/, 150_000);

    // The day every batch inference run scores, and a model version to score it with.
    for (const featureGroup of ['flights', 'airport_delays']) {
      await client.workflow.execute(featurePipeline, { taskQueue: cpuQueue, workflowId: uniqueId(`setup-${featureGroup}`), args: [{ featureGroup, ...SCORED }] });
    }
    const backend = await loadBackend('cpu', 'wasm');
    await registerModelVersion(knex, backend.tf, { model: 'flight_delay', view: flightDelays, ...SCORED, seed: 3, epochs: 0 });
    await new ModelRegistry({ knex }).setAlias('flight_delay', 'champion', 1);
    spine = await flightIds(SCORED);
    const source = await sourceFlightIds(SCORED);
    expect(spine).toEqual(source.valid);
    expect(spine.length).toBeGreaterThan(10_000);
    log(`setup: ${spine.length} flights of ${SCORED.start.slice(0, 10)} stored and a model registered`);
  });

  afterAll(async () => {
    const steps: Array<[string, () => Promise<unknown>]> = [
      ['worker', async () => worker?.stop(15_000)],
      ['client', async () => connection?.close()],
      ['knex', async () => knex?.destroy()],
      ['temporal', async () => temporal?.stop()],
      ['postgres', async () => postgres?.stop()],
    ];
    for (const [what, step] of steps) {
      await step().catch((err: unknown) => log(`stopping the ${what} failed: ${String(err)}`));
    }
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  const db = (): Knex => {
    if (!knex) throw new Error('no database connection');
    return knex;
  };

  async function flightIds(window: Window, commitId?: number): Promise<number[]> {
    const query = db()('fg_flights_v2').where('event_time', '>=', window.start).andWhere('event_time', '<', window.end).orderBy('flight_id');
    if (commitId !== undefined) query.andWhere({ _commit_id: commitId });
    return (await query.select<Array<{ flight_id: number }>>('flight_id')).map((r) => Number(r.flight_id));
  }

  const startFeatureRun = (window: Window) => client.workflow.start(featurePipeline, { taskQueue: cpuQueue, workflowId: uniqueId('restart-features'), args: [{ featureGroup: 'flights', ...window }] });
  const startInference = () => client.workflow.start(batchInference, { taskQueue: cpuQueue, workflowId: uniqueId('restart-batch'), args: [{ model: 'flight_delay', ...SCORED, partitions: PARTITIONS }] });

  /**
   * Holds every feature ingest and prediction write: a SHARE lock on feature_rejects (an
   * ingest attempt first clears its partition's rejects) and on predictions (a partition's
   * COPY, or first the delete of its range when it was finished once), until the
   * transaction ends.
   */
  async function holdWrites(): Promise<Knex.Transaction> {
    const hold = await db().transaction();
    // A session that dies (the Postgres restart) rejects the transaction: that is expected.
    hold.executionPromise.catch(() => undefined);
    await hold.raw('lock table feature_rejects, predictions in share mode');
    return hold;
  }

  /** Sessions of the worker waiting on the held locks: ingest attempts and prediction partitions. */
  async function blockedWrites(): Promise<{ ingest: number; predict: number }> {
    const { rows } = (await db().raw(`select query from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database() and pid <> pg_backend_pid()`)) as { rows: Array<{ query: string }> };
    return {
      ingest: rows.filter((r) => /^delete from "feature_rejects"/i.test(r.query)).length,
      predict: rows.filter((r) => /^(delete from predictions |copy predictions )/i.test(r.query)).length,
    };
  }

  /** Waits until the ingest and every prediction partition are running, each blocked on the held locks. */
  async function untilInFlight(feature: WorkflowHandle, inference: WorkflowHandle): Promise<void> {
    const blocked = await waitFor(
      'the ingest and every prediction partition to be running, blocked on the held locks',
      async () => {
        const [f, p] = await Promise.all([feature.query(progressQuery), inference.query(progressQuery)]);
        if (f.stage !== 'ingest' || p.stage !== 'predict') return undefined;
        const waits = await blockedWrites();
        return waits.ingest >= 1 && waits.predict >= PARTITIONS ? waits : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    // One ingest session (two if a very slow start let its heartbeat time out: the retry waits beside the first).
    expect(blocked.ingest).toBeGreaterThanOrEqual(1);
    expect(blocked.predict).toBe(PARTITIONS);
    // Temporal has them as started attempts too.
    expect(await startedActivities(feature)).toEqual(['ingestPartition']);
    expect(await startedActivities(inference)).toEqual(Array.from({ length: PARTITIONS }, () => 'predictPartition'));
  }

  async function startedActivities(handle: WorkflowHandle): Promise<string[]> {
    const { raw } = await handle.describe();
    return (raw.pendingActivities ?? []).filter((a) => a.lastStartedTime).map((a) => a.activityType?.name ?? '?');
  }

  /** The attempt numbers of each started activity of a type, from the run's history. */
  async function attempts(handle: WorkflowHandle, activityType: string): Promise<number[]> {
    const events = (await handle.fetchHistory()).events ?? [];
    const types = new Map<string, string>();
    for (const e of events) if (e.activityTaskScheduledEventAttributes) types.set(String(e.eventId), e.activityTaskScheduledEventAttributes.activityType?.name ?? '?');
    return events.flatMap((e) => {
      const started = e.activityTaskStartedEventAttributes;
      return started && types.get(String(started.scheduledEventId)) === activityType ? [started.attempt ?? 0] : [];
    });
  }

  /** The feature run's commit attempt, once planned. */
  async function commitOf(workflowId: string): Promise<Array<{ id: number; status: string }>> {
    return db()('feature_commits').where({ workflow_id: workflowId }).orderBy('id').select('id', 'status');
  }

  /** Exactly the window's source rows, once each, all from the run's one commit. */
  async function expectExactFeatures(workflowId: string, result: Awaited<ReturnType<typeof featurePipeline>>, window: Window): Promise<void> {
    const source = await sourceFlightIds(window);
    expect(result).toMatchObject({ featureGroup: 'flights', version: 2, rowsIn: source.inWindow, rowsCommitted: source.valid.length, rowsRejected: source.inWindow - source.valid.length });
    expect(await commitOf(workflowId)).toEqual([{ id: result.commitId, status: 'committed' }]);
    const stored = await flightIds(window);
    expect(stored).toHaveLength(source.valid.length);
    expect(new Set(stored).size).toBe(stored.length);
    expect(stored).toEqual(source.valid);
    expect(await flightIds(window, result.commitId)).toEqual(source.valid);
  }

  /** Exactly one prediction per spine row of SCORED, from the pinned version; the run completed. */
  async function expectExactPredictions(result: Awaited<ReturnType<typeof batchInference>>): Promise<void> {
    expect(result).toMatchObject({ model: 'flight_delay', version: 1, rows: spine.length, rowsRejected: 0 });
    expect(await predictions.countPredictions(result.runId)).toEqual([{ version: 1, rows: spine.length, entities: spine.length }]);
    const scored = (await predictions.predictions(result.runId)).map((p) => Number(p.entityKey.flight_id)).sort((a, b) => a - b);
    expect(scored).toEqual(spine);
    expect(await predictions.run(result.runId)).toMatchObject({ status: 'completed', version: 1, rows: spine.length, spineRows: spine.length });
    const partitions = await predictions.partitions(result.runId);
    expect(partitions.map((p) => p.status)).toEqual(Array.from({ length: PARTITIONS }, () => 'done'));
    expect(partitions.reduce((n, p) => n + p.rows, 0)).toBe(spine.length);
  }

  const dumpWorkerOutput = () => console.log(`[restarts] the worker's last output:\n${worker?.output().slice(-6000) ?? '(no worker)'}`);

  const expectWorkerAlive = (pid: number | undefined) => {
    expect(worker?.process.pid).toBe(pid);
    expect(worker?.process.exitCode).toBeNull();
    expect(worker?.process.signalCode).toBeNull();
  };

  it('Temporal killed (SIGKILL) and restarted on its db file: both runs finish, as the same executions, exactly', async () => {
    onTestFailed(dumpWorkerOutput);
    const server = temporal;
    if (!server) throw new Error('no Temporal server');
    const workerPid = worker?.process.pid;
    const hold = await holdWrites();
    try {
      const [feature, inference] = await Promise.all([startFeatureRun(INGESTED_ACROSS_TEMPORAL), startInference()]);
      await untilInFlight(feature, inference);
      const runIds = [(await feature.describe()).runId, (await inference.describe()).runId];
      const [commit] = await commitOf(feature.workflowId);
      expect(commit?.status).toBe('staging');

      const downAt = Date.now();
      const exited = new Promise<unknown>((resolve) => server.process.once('exit', resolve));
      server.process.kill('SIGKILL');
      await exited;
      log(`temporal: killed with the ingest and ${PARTITIONS} prediction partitions in flight`);

      // The work goes on while the server is down: the locks go, the attempts write their rows.
      await hold.rollback();
      const stagedTable = `fg_flights_v2__c${commit?.id}`;
      const staged = await waitFor(
        'the ingest and every prediction partition to finish their writes while Temporal is down',
        async () => {
          const done = (await db()('prediction_run_partitions').where({ run_id: inference.workflowId, status: 'done' }).count<Array<{ n: number | string }>>({ n: '*' }))[0]?.n;
          const rows = (await db()(stagedTable).count<Array<{ n: number | string }>>({ n: '*' }))[0]?.n;
          return Number(done) === PARTITIONS && Number(rows) > 0 ? Number(rows) : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 250 },
      );
      // Nothing answered on Temporal's port while that work was done.
      expect(await isListening(temporalOptions.port)).toBe(false);
      log(`temporal down: ${staged} rows staged, ${PARTITIONS} partitions written`);

      temporal = await startTemporalDevServer(temporalOptions);
      const upAt = Date.now();
      log(`temporal: back on ${temporal.address} after ${upAt - downAt} ms down`);

      const [featureResult, inferenceResult] = await Promise.all([feature.result(), inference.result()]);
      log(`temporal restart: both runs finished ${Date.now() - upAt} ms after it was back`);
      // The same executions, kept in the db file (an in-memory server would have lost them).
      expect([(await feature.describe()).runId, (await inference.describe()).runId]).toEqual(runIds);
      await expectExactFeatures(feature.workflowId, featureResult, INGESTED_ACROSS_TEMPORAL);
      await expectExactPredictions(inferenceResult);
      expect(inferenceResult.runId).toBe(inference.workflowId);
      log(`temporal restart: ingest attempts ${JSON.stringify(await attempts(feature, 'ingestPartition'))}, prediction attempts ${JSON.stringify(await attempts(inference, 'predictPartition'))}`);
      // The worker that ran them before the crash polled the new server: it neither exited nor was replaced.
      expectWorkerAlive(workerPid);
    } finally {
      if (!hold.isCompleted()) await hold.rollback().catch(() => undefined);
    }
  }, 240_000);

  it('Postgres shut down for 25 s and restarted on its data directory: both runs finish exactly, their attempts retried', async () => {
    onTestFailed(dumpWorkerOutput);
    const workerPid = worker?.process.pid;
    const hold = await holdWrites();
    try {
      const [feature, inference] = await Promise.all([startFeatureRun(INGESTED_ACROSS_POSTGRES), startInference()]);
      await untilInFlight(feature, inference);
      expect(await flightIds(INGESTED_ACROSS_POSTGRES)).toEqual([]);
      expect(await predictions.countPredictions(inference.workflowId)).toEqual([]);

      const downAt = Date.now();
      // A fast shutdown: every session ends, the blocked attempts' too (and the lock holder's).
      await postgres?.stop();
      expect(await isListening(pgOptions.port ?? 0)).toBe(false);
      await hold.rollback().catch(() => undefined);
      // Down longer than the ~15 s that 5 attempts with uncapped backoff covered: the
      // retry policy (10 attempts, backoff capped at 30 s) rides it out.
      await new Promise((resolve) => setTimeout(resolve, POSTGRES_DOWN_MS));
      postgres = await startPostgres(config, pgOptions);
      expect(postgres.started).toBe(true);
      const upAt = Date.now();
      log(`postgres: back on port ${pgOptions.port} after ${upAt - downAt} ms down`);

      const [featureResult, inferenceResult] = await Promise.all([feature.result(), inference.result()]);
      log(`postgres restart: both runs finished ${Date.now() - upAt} ms after it was back`);
      await expectExactFeatures(feature.workflowId, featureResult, INGESTED_ACROSS_POSTGRES);
      await expectExactPredictions(inferenceResult);
      // The attempts in flight lost their sessions with the shutdown: each partition was retried.
      const ingestAttempts = await attempts(feature, 'ingestPartition');
      const predictAttempts = await attempts(inference, 'predictPartition');
      log(`postgres restart: ingest attempts ${JSON.stringify(ingestAttempts)}, prediction attempts ${JSON.stringify(predictAttempts)}`);
      expect(ingestAttempts).toHaveLength(1);
      expect(ingestAttempts[0]).toBeGreaterThanOrEqual(2);
      expect(predictAttempts).toHaveLength(PARTITIONS);
      for (const attempt of predictAttempts) expect(attempt).toBeGreaterThanOrEqual(2);
      // The same worker process reconnected: it neither exited nor was replaced.
      expectWorkerAlive(workerPid);
    } finally {
      if (!hold.isCompleted()) await hold.rollback().catch(() => undefined);
    }
  }, 240_000);
});
