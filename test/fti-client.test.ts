import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRunFailure } from '../client/failures.ts';
import { FtiClient, PipelineInputError } from '../client/fti-client.ts';
import type { ProgressUpdate } from '../client/pipeline-run.ts';
import type { FeaturePipelineInput } from '../core/inputs.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-client-'));
const at = (hour: number, minute = 0) => new Date(Date.UTC(2024, 4, 1, hour, minute)).toISOString();

// Clicks of three users, one row per user every 30 minutes from 00:00 to 05:30.
const rows = Array.from({ length: 12 }, (_, slot) => ['ann', 'bob', 'cy'].map((user, i) => ({ user, at: at(Math.floor(slot / 2), (slot % 2) * 30), clicks: slot + i }))).flat();
const ndjson = (items: object[]) => items.map((r) => JSON.stringify(r)).join('\n');
const rowsIn = (start: string, end: string) => rows.filter((r) => r.at >= start && r.at < end);
const clicksFile = path.join(scratch, 'clicks.ndjson');
fs.writeFileSync(clicksFile, ndjson(rows));

const clicks = defineFeatureGroup({
  name: 'clicks',
  version: 1,
  entityKeys: ['user'],
  eventTime: 'at',
  features: { user: 'string', at: 'timestamp', clicks: 'int' },
  source: { kind: 'ndjson', path: clicksFile },
});

/**
 * A named pipe as the run's source: the ingest activity blocks reading it until the
 * test writes, so the run is reliably "in the middle" while the test looks at it.
 */
function fifo(name: string): string {
  const p = path.join(scratch, name);
  execFileSync('mkfifo', [p]);
  return p;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('FtiClient: start, progress, wait, cancel (real Temporal + Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let store: FeatureStore;
  let fti: FtiClient;

  beforeAll(async () => {
    db = await createTestDb('client');
    temporal = await createTestTemporal('client');
    // The runs' named pipes are in the scratch directory: the worker's data root.
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project: defineProject({ featureGroups: [clicks] }), dataRoots: [scratch] });
    store = new FeatureStore({ knex: db.knex });
    fti = FtiClient.fromClient(temporal.client, { taskQueuePrefix: temporal.prefix });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('derives workflow ids from the business inputs, and sends runs to the deployment queue', () => {
    expect(fti.workflowId('feature', { featureGroup: 'clicks', version: 1, start: '2024-05-01T00:00:00Z', end: '2024-05-01T02:00:00.000Z' })).toBe(
      'features:clicks:v1:2024-05-01T00:00:00.000Z..2024-05-01T02:00:00.000Z',
    );
    expect(fti.workflowId('feature', { featureGroup: 'clicks' }, new Date(at(7)))).toBe('features:clicks:latest:run-2024-05-01T07:00:00.000Z');
    expect(fti.taskQueue('feature')).toBe(`${temporal.prefix}fti-cpu`);
    // The same rule for the other pipelines: what was asked for, over which window.
    const window = { start: at(0), end: at(6) };
    const span = '2024-05-01T00:00:00.000Z..2024-05-01T06:00:00.000Z';
    expect(fti.workflowId('infer', { model: 'delay', ...window })).toBe(`infer:delay@champion:${span}`);
    expect(fti.workflowId('infer', { model: 'delay', version: 3, ...window })).toBe(`infer:delay@v3:${span}`);
    expect(fti.workflowId('train', { featureView: 'delays', model: 'delay', ...window })).toBe(`train:delay:delays:latest:${span}`);
    expect(fti.workflowId('train', { featureView: 'delays', model: 'delay', ...window, params: { epochs: 3 } })).toMatch(new RegExp(`^train:delay:delays:latest:${span}:options-[0-9a-f]{10}$`));
    expect(fti.workflowId('train', { featureView: 'delays', model: 'delay', trainingDatasetId: 7 })).toBe('train:delay:dataset-7');
    expect(fti.taskQueue('train')).toBe(`${temporal.prefix}fti-cpu`);
  });

  it('refuses a malformed input before starting anything', async () => {
    await expect(fti.start('feature', { featureGroup: 'Clicks!', start: 'noon' } as FeaturePipelineInput)).rejects.toThrow(PipelineInputError);
    await expect(fti.start('feature', { featureGroup: 'clicks', start: at(2), end: at(1) })).rejects.toThrow(/start must be before end/);
    // The chain starts one run per group at once, named after the group: each group once.
    const chain = { features: { groups: ['clicks', 'clicks'] }, training: { featureView: 'delays', model: 'delay' }, inference: { start: at(0), end: at(1) } };
    await expect(fti.start('all', chain)).rejects.toThrow(/features\.groups: each feature group may be named once/);
  });

  it('reports progress while running, and a double trigger attaches to the running run instead of starting another', async () => {
    const pipe = fifo('window-0-2.ndjson');
    const input: FeaturePipelineInput = { featureGroup: 'clicks', version: 1, start: at(0), end: at(2), source: { kind: 'ndjson', path: pipe } };
    const run = await fti.start('feature', input);
    expect(run.existing).toBe(false);
    expect(run.workflowId).toMatch(/^features:clicks:v1:2024-05-01T00:00:00.000Z..2024-05-01T02:00:00.000Z:source-[0-9a-f]{10}$/);

    // Blocked on the pipe: the workflow says it is ingesting its one partition.
    await until('the ingest stage', async () => (await run.progress()).stage === 'ingest');
    expect(await run.progress()).toMatchObject({ stage: 'ingest', done: 0, total: 1 });
    expect(await run.status()).toBe('RUNNING');

    const again = await fti.start('feature', input);
    expect(again).toMatchObject({ existing: true, workflowId: run.workflowId, runId: run.runId });

    const updates: ProgressUpdate[] = [];
    const waiting = run.wait({ onProgress: (u) => updates.push(u), intervalMs: 100 });
    await fs.promises.writeFile(pipe, ndjson(rows));
    const result = await waiting;

    const expected = rowsIn(at(0), at(2)).length;
    expect(result).toMatchObject({ featureGroup: 'clicks', version: 1, rowsIn: expected, rowsCommitted: expected, rowsInserted: expected, rowsRejected: 0 });
    expect(await again.result()).toEqual(result);
    expect(updates.map((u) => (u.kind === 'progress' ? u.progress.stage : u.kind))).toContain('ingest');
    expect(await run.progress()).toMatchObject({ stage: 'done', done: 1, total: 1, details: { commitId: result.commitId } });

    // After it completed, the same start returns the completed run: still one commit.
    const third = await fti.start('feature', input);
    expect(third).toMatchObject({ existing: true, runId: run.runId });
    expect(await third.result()).toEqual(result);
    const group = await store.group('clicks', 1);
    expect((await store.commits(group, { status: 'committed' })).filter((c) => c.workflowId === run.workflowId)).toHaveLength(1);
  });

  it('rerun recomputes a completed window on purpose, committing no new rows', async () => {
    const input: FeaturePipelineInput = { featureGroup: 'clicks', version: 1, start: at(2), end: at(4) };
    const first = await fti.run('feature', input);
    expect(first.rowsInserted).toBe(rowsIn(at(2), at(4)).length);

    const attached = await fti.start('feature', input);
    expect(attached.existing).toBe(true);
    expect(await attached.result()).toEqual(first);

    const rerun = await fti.start('feature', input, { rerun: true });
    expect(rerun.existing).toBe(false);
    expect(rerun.runId).not.toBe(attached.runId);
    const second = await rerun.result();
    expect(second.commitId).not.toBe(first.commitId);
    expect(second).toMatchObject({ rowsIn: first.rowsIn, rowsInserted: 0, rowsUpdated: 0, rowsUnchanged: first.rowsCommitted });
  });

  it('cancel stops a run mid-ingest: the run ends CANCELLED and its commit attempt is marked failed', async () => {
    const pipe = fifo('window-4-6.ndjson');
    const run = await fti.start('feature', { featureGroup: 'clicks', version: 1, start: at(4), end: at(6), source: { kind: 'ndjson', path: pipe } });
    await until('the ingest stage', async () => (await run.progress()).stage === 'ingest');

    await run.cancel();
    // Let the blocked reader see end-of-file, so the ingest activity (and its COPY) can end.
    await fs.promises.writeFile(pipe, '');

    const failure = describeRunFailure(await run.result().then(() => undefined, (e: unknown) => e));
    expect(failure.kind).toBe('cancelled');
    expect(await run.status()).toBe('CANCELLED');
    const group = await store.group('clicks', 1);
    const attempt = (await store.commits(group)).find((c) => c.workflowId === run.workflowId);
    expect(attempt).toMatchObject({ status: 'failed', error: 'cancelled' });
  });
});
