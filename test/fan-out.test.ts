/**
 * Bounded fan-out (real Temporal + Postgres): a Parquet file of 10,000 row groups is
 * cut into partitions by rows, not one activity per row group; a run keeps at most
 * `parallelism` partition activities in flight; the history stays small and carries no
 * payload over 64 KB; and a partition that fails cancels its siblings instead of
 * leaving them to be retried against a failed commit.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { temporal as proto } from '@temporalio/proto';
import { asyncBufferFromFile, parquetMetadataAsync } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureType } from '../core/errors.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { featurePipeline } from '../workflows/index.ts';
import { scratchFiles, writeReadingsParquet } from './helpers/files.ts';
import { largestPayload } from './helpers/histories.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';
import { failureOf } from './helpers/workflows.ts';

const ROW_GROUPS = 10_000;
const ROWS_PER_GROUP = 10;
const ROWS = ROW_GROUPS * ROWS_PER_GROUP;
const SENSORS = 100;

const root = scratchFiles('fan-out');
const readingsFile = path.join(root.dir, 'readings.parquet');
// 10,000 row groups of 10 readings from 100 sensors.
writeReadingsParquet(readingsFile, { rowGroups: ROW_GROUPS, rowsPerGroup: ROWS_PER_GROUP, sensors: SENSORS });

const readings = defineFeatureGroup({
  name: 'fan_readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', value: 'float' },
  source: { kind: 'parquet', path: readingsFile, timeColumn: 'at' },
});
const project = defineProject({ featureGroups: [readings] });

type HistoryEvent = proto.api.history.v1.IHistoryEvent;

/** The most partition activities the history shows scheduled and not yet closed at once. */
function maxInFlight(events: HistoryEvent[], activityType: string): number {
  const open = new Set<string>();
  let max = 0;
  for (const e of events) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled?.activityType?.name === activityType) open.add(String(e.eventId));
    const closed =
      e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? e.activityTaskCanceledEventAttributes ?? e.activityTaskCancelRequestedEventAttributes;
    if (closed?.scheduledEventId) open.delete(String(closed.scheduledEventId));
    max = Math.max(max, open.size);
  }
  return max;
}

describe('bounded fan-out (real Temporal + Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let store: FeatureStore;

  const start = (input: Parameters<typeof featurePipeline>[0]) => temporal.client.workflow.start(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('fan-out'), args: [input] });
  const eventsOf = async (workflowId: string) => (await temporal.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];

  beforeAll(async () => {
    db = await createTestDb('fan_out');
    temporal = await createTestTemporal('fan-out');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [root.dir] });
    store = new FeatureStore({ knex: db.knex });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
    fs.rmSync(root.dir, { recursive: true, force: true });
  });

  it('the file really has 10,000 row groups', async () => {
    const metadata = await parquetMetadataAsync(await asyncBufferFromFile(readingsFile));
    expect(metadata.row_groups).toHaveLength(ROW_GROUPS);
  });

  it('10,000 row groups are one partition by default: a small history, every row committed once', async () => {
    const handle = await start({ featureGroup: 'fan_readings' });
    const result = await handle.result();
    expect(result).toMatchObject({ rowsIn: ROWS, rowsCommitted: ROWS, rowsRejected: 0 });
    const events = await eventsOf(handle.workflowId);
    expect(events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'ingestPartition')).toHaveLength(1);
    expect(events.length).toBeLessThan(40);
    expect(largestPayload(events)).toBeLessThan(64 * 1024);
    expect(await store.read(await store.group('fan_readings', 1)).count()).toBe(ROWS);
  });

  it('partitionRows cuts it by rows; parallelism caps the activities in flight', async () => {
    const handle = await start({ featureGroup: 'fan_readings', partitionRows: 10_000, parallelism: 3, start: '2024-01-01T00:00:00Z', end: '2024-01-01T12:00:00Z' });
    const result = await handle.result();
    // 12 hours of minutes: 720 timestamps x 100 sensors; the row groups outside the window are never read.
    expect(result).toMatchObject({ rowsIn: 72_000, rowsCommitted: 72_000, rowsRejected: 0 });
    const events = await eventsOf(handle.workflowId);
    const partitions = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'ingestPartition');
    expect(partitions).toHaveLength(8); // 7,200 row groups of 10 rows, at least 10,000 rows each (the last one fewer)
    expect(maxInFlight(events, 'ingestPartition')).toBe(3);
    expect(largestPayload(events)).toBeLessThan(64 * 1024);
  });

  it('a partition that fails cancels its siblings: none is retried, nothing becomes visible, nothing is left staged', async () => {
    // Corrupt one column chunk in the fourth partition (a page that does not decompress): its
    // first row group, so it fails on its first page while its siblings are still reading or
    // waiting for one of the worker's 4 activity slots (with the page mid-partition, a loaded
    // machine let every sibling finish first, leaving nothing to cancel).
    const corrupt = path.join(root.dir, 'corrupt.parquet');
    const bytes = fs.readFileSync(readingsFile);
    const metadata = await parquetMetadataAsync(await asyncBufferFromFile(readingsFile));
    const page = Number(metadata.row_groups[3000]?.columns[2]?.meta_data?.data_page_offset);
    for (let i = 0; i < 24; i++) bytes[page + 8 + i] = (i * 131 + 7) & 0xff;
    fs.writeFileSync(corrupt, bytes);
    const group = await store.group('fan_readings', 1);
    const visible = await store.read(group).count();

    const handle = await start({ featureGroup: 'fan_readings', source: { kind: 'parquet', path: 'corrupt.parquet', timeColumn: 'at' }, partitionRows: 10_000, parallelism: 10 });
    const failure = await failureOf(handle.result());
    expect(failure.type).toBe(FailureType.InvalidInput);
    expect(failure.message).toMatch(/corrupt\.parquet is not a readable Parquet file/);

    const events = await eventsOf(handle.workflowId);
    const attempts = events.flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt ?? 0] : []));
    expect(Math.max(...attempts)).toBe(1);
    expect(events.filter((e) => e.activityTaskCancelRequestedEventAttributes).length).toBeGreaterThan(0);
    expect(await store.read(group).count()).toBe(visible);
    const [attempt] = (await store.commits(group)).slice(-1);
    expect(attempt).toMatchObject({ status: 'failed' });
    const { rows: staged } = (await db.knex.raw(`select count(*)::int as n from pg_tables where schemaname = ? and tablename like ?`, [db.schema, `%\\_\\_c${attempt?.id}`])) as { rows: Array<{ n: number }> };
    expect(staged[0]?.n).toBe(0);
  });
});
