/**
 * The worker's connection pool at high concurrency (real Temporal + Postgres): 16
 * partition activities run at once on one worker whose pool is sized from its
 * concurrency (workers/worker.ts workerPoolSize). Every partition holds its fenced COPY
 * transaction while it records rejects over a second connection: with a pool smaller
 * than the activities need (the old fixed 10), they wait on each other until knex's
 * acquire timeout and are retried (with poolMax 10 this test hangs past its timeout).
 * Here none waits: every attempt is the first.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFeatureGroup } from '../../features/definitions.ts';
import { defineProject } from '../../features/project.ts';
import { createKnex } from '../../registry/db/index.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { workerKnexOptions, workerPoolSize } from '../../workers/worker.ts';
import { featurePipeline } from '../../workflows/index.ts';
import { scratchFiles, writeReadingsParquet } from '../helpers/files.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from '../helpers/services.ts';

const CONCURRENCY = 16;
const ROW_GROUPS = 16;
const ROWS_PER_GROUP = 20_000;
const ROWS = ROW_GROUPS * ROWS_PER_GROUP;
/** Every 100th reading is made unreadable by the transform: rejected while its partition COPYs, in every partition. */
const isBad = (i: number) => i % 100 === 42;

const root = scratchFiles('pool');
const readingsFile = path.join(root.dir, 'readings.parquet');
writeReadingsParquet(readingsFile, { rowGroups: ROW_GROUPS, rowsPerGroup: ROWS_PER_GROUP, sensors: 1000 });
const BAD = Array.from({ length: ROWS }, (_, i) => i).filter(isBad).length;

const readings = defineFeatureGroup({
  name: 'pool_readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', value: 'float' },
  source: { kind: 'parquet', path: readingsFile, timeColumn: 'at' },
  validation: 'quarantine',
  maxRejectRatio: 0.05,
  transform: (raw, { rowNumber }) => ({ ...raw, value: isBad(rowNumber) ? 'not-a-number' : raw.value }),
});

describe(`a worker running ${CONCURRENCY} activities at once (real Temporal + Postgres)`, () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let knex: Knex;
  let worker: RunningWorker;

  beforeAll(async () => {
    db = await createTestDb('pool');
    temporal = await createTestTemporal('pool');
    // The pool a worker process of this concurrency makes (workers/worker.ts runPoolWorker).
    knex = createKnex({ url: db.url, schema: db.schema, applicationName: 'fti-test-pool', ...workerKnexOptions(CONCURRENCY) });
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex, project: defineProject({ featureGroups: [readings] }), dataRoots: [root.dir], maxConcurrentActivities: CONCURRENCY });
  });

  afterAll(async () => {
    await worker?.stop();
    await knex?.destroy();
    await temporal?.close();
    await db?.close();
    fs.rmSync(root.dir, { recursive: true, force: true });
  });

  it('its sessions carry the worker limits: no statement past 60 minutes, no transaction idle past 10', async () => {
    const { rows } = (await knex.raw(`select current_setting('statement_timeout') as statement, current_setting('idle_in_transaction_session_timeout') as idle`)) as { rows: Array<{ statement: string; idle: string }> };
    expect(rows[0]).toEqual({ statement: '1h', idle: '10min' });
    expect(workerKnexOptions(CONCURRENCY).poolMax).toBe(workerPoolSize(CONCURRENCY));
  });

  it(`${CONCURRENCY} partitions, each COPYing while it records rejects, all run at once and finish on their first attempt`, async () => {
    const handle = await temporal.client.workflow.start(featurePipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('pool'),
      args: [{ featureGroup: 'pool_readings', partitionRows: 1000, parallelism: CONCURRENCY }],
    });
    const result = await handle.result();
    expect(result).toMatchObject({ rowsIn: ROWS, rowsRejected: BAD, rowsCommitted: ROWS - BAD });

    const events = (await handle.fetchHistory()).events ?? [];
    const scheduled = new Map<string, string>();
    for (const e of events) {
      if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'ingestPartition') scheduled.set(String(e.eventId), 'ingestPartition');
    }
    expect(scheduled.size).toBe(ROW_GROUPS);
    // Every partition's attempt was its first: none waited for a connection until it timed out.
    const attempts = events.flatMap((e) => (e.activityTaskStartedEventAttributes && scheduled.has(String(e.activityTaskStartedEventAttributes.scheduledEventId)) ? [e.activityTaskStartedEventAttributes.attempt] : []));
    expect(attempts).toEqual(Array.from({ length: ROW_GROUPS }, () => 1));
    // They did run side by side: the most partitions started and not yet completed at one instant.
    const spans = events.flatMap((e) => {
      const started = e.activityTaskStartedEventAttributes;
      if (!started || !scheduled.has(String(started.scheduledEventId))) return [];
      const completed = events.find((c) => c.activityTaskCompletedEventAttributes?.startedEventId?.toString() === String(e.eventId));
      const ms = (t: typeof e.eventTime) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
      return [{ from: ms(e.eventTime), to: ms(completed?.eventTime) }];
    });
    const overlap = Math.max(...spans.map((s) => spans.filter((o) => o.from <= s.from && s.from < o.to).length));
    console.log(`pool of ${workerPoolSize(CONCURRENCY)} connections: ${overlap} of ${ROW_GROUPS} partitions ran at once`);
    expect(overlap).toBeGreaterThanOrEqual(CONCURRENCY / 2);

    const store = new FeatureStore({ knex: db.knex });
    expect(await store.read(await store.group('pool_readings', 1)).count()).toBe(ROWS - BAD);
  });
});
