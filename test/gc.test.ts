import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CompactionReport } from '../activities/compaction.ts';
import { collectGarbage, temporalWorkflowState, type GcReport } from '../activities/gc.ts';
import { defineProject } from '../features/project.ts';
import { loadBackend } from '../ml/backend.ts';
import { FeatureStore, groupTables, type FeatureCommit } from '../registry/feature-store/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import { compaction, featurePipeline, gc, trainingPipeline } from '../workflows/index.ts';
import { runFtiJson } from './helpers/cli.ts';
import { scratchFiles } from './helpers/files.ts';
import { events, fraudView as view, scores } from './helpers/fraud.ts';
import { registerModelVersion } from './helpers/models.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const { dir, ndjson } = scratchFiles('gc');

const project = defineProject({ featureGroups: [events, scores], featureViews: [view] });

const day = (d: number) => new Date(Date.UTC(2024, 0, 1 + d)).toISOString();

async function tableExists(knex: Knex, table: string): Promise<boolean> {
  const found = (await knex.raw('select to_regclass(?) is not null as found', [table])) as { rows: Array<{ found: boolean }> };
  return found.rows[0]?.found ?? false;
}

async function rowCount(knex: Knex, table: string): Promise<number> {
  const result = (await knex.raw('select count(*)::int as n from ??', [table])) as { rows: Array<{ n: number }> };
  return result.rows[0]?.n ?? -1;
}

describe('fti gc: reaping leftovers', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let features: FeatureStore;
  let training: TrainingStore;

  // A feature run whose workflow is (still) running: its commit attempt writes into its table.
  let runningWorkflowId: string;
  let orphan: FeatureCommit;
  // An attempt begun outside any workflow (it names none): age alone decides.
  let unnamed: FeatureCommit;
  let committed: Array<{ group: string; commit: FeatureCommit }>;
  let unusedDatasetId: number;
  let usedDatasetId: number;
  let buildingDatasetId: number;
  const joining = 'td_joining_0123456789abcdef';

  /** What gc must never change: every committed commit's rows, the used dataset's rows. */
  const untouched = async () => ({
    offline: await rowCount(db.knex, groupTables('events', 1).offline),
    committedRows: await Promise.all(
      committed.map(async (c) => ((await db.knex.raw('select count(*)::int as n from ?? where _commit_id = ?', [groupTables(c.group, 1).offline, c.commit.id])) as { rows: Array<{ n: number }> }).rows[0]?.n),
    ),
    used: await rowCount(db.knex, `td_${usedDatasetId}`),
  });

  const gcNow = (options: { retention: '0' | '1m' | '1d'; dryRun?: boolean }): Promise<GcReport> =>
    collectGarbage({ features, training, workflows: temporalWorkflowState(temporal.client, temporal.cpuQueue) }, options);

  beforeAll(async () => {
    db = await createTestDb('gc');
    temporal = await createTestTemporal('gc');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [dir] });
    features = new FeatureStore({ knex: db.knex });
    training = new TrainingStore({ knex: db.knex });

    const run = (featureGroup: string, file: string) =>
      temporal.client.workflow.execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('fp'), args: [{ featureGroup, source: { kind: 'ndjson', path: file } }] });
    const spine = Array.from({ length: 30 }, (_, i) => ({ event_id: i, at: day(i + 1), user_id: `u${i % 3}`, amount: i, fraud: i % 4 === 0 }));
    const scoreRows = Array.from({ length: 30 }, (_, i) => ({ user_id: `u${i % 3}`, at: day(i), score: i }));
    await run('events', ndjson('events.ndjson', spine));
    await run('scores', ndjson('scores.ndjson', scoreRows));
    const eventsGroup = await features.group('events', 1);
    const scoresGroup = await features.group('scores', 1);
    committed = [
      ...(await features.commits(eventsGroup, { status: 'committed' })).map((commit) => ({ group: 'events', commit })),
      ...(await features.commits(scoresGroup, { status: 'committed' })).map((commit) => ({ group: 'scores', commit })),
    ];
    expect(committed).toHaveLength(2);

    // A real workflow run that stays running (no worker polls its queue), and the attempt it began,
    // with rows staged in the attempt's table, as a feature run mid-write has.
    const handle = await temporal.client.workflow.start(featurePipeline, { taskQueue: `${temporal.prefix}nobody-polls`, workflowId: uniqueId('killed'), args: [{ featureGroup: 'events' }] });
    runningWorkflowId = handle.workflowId;
    orphan = await features.beginCommit(eventsGroup, { idempotencyKey: `${handle.workflowId}/${handle.firstExecutionRunId}`, workflowId: handle.workflowId, runId: handle.firstExecutionRunId });
    const stage = groupTables('events', 1).commit(orphan.id);
    await db.knex.raw(
      `insert into ?? (event_id, at, user_id, amount, fraud, _row_number, _available_at) select event_id, at, user_id, amount, fraud, _row_number, _available_at from ?? limit 5`,
      [stage, groupTables('events', 1).offline],
    );
    unnamed = await features.beginCommit(scoresGroup, { idempotencyKey: uniqueId('manual') });

    const record = await features.registerView(view);
    unusedDatasetId = (await training.createDataset(record, { idempotencyKey: uniqueId('unused') })).id;
    buildingDatasetId = (await training.createDataset(record, { idempotencyKey: uniqueId('building'), workflowId: runningWorkflowId })).id;
    const backend = await loadBackend('cpu', 'wasm');
    usedDatasetId = (await registerModelVersion(db.knex, backend.tf, { model: 'fraud_model', view, start: day(1), end: day(31), seed: 1, epochs: 0 })).trainingDatasetId;
    // The scratch table of a dataset build whose worker died mid-join.
    await db.knex.raw('create unlogged table ?? (x int)', [joining]);
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('leaves everything younger than the retention alone', async () => {
    const report = await gcNow({ retention: '1d' });
    expect(report.counts).toEqual({ commitsReaped: 0, commitsKept: 0, datasetsReaped: 0, datasetsKept: 0, joiningTables: 0 });
    expect(await tableExists(db.knex, groupTables('scores', 1).commit(unnamed.id))).toBe(true);
    expect(await tableExists(db.knex, `td_${unusedDatasetId}`)).toBe(true);
    // Postgres does not know a table's age: the scratch table's counts from now.
    expect(report.datasets.joiningNoticed).toEqual([joining]);
    expect(await tableExists(db.knex, joining)).toBe(true);
    const again = await gcNow({ retention: '1d' });
    expect(again.datasets.joiningNoticed).toEqual([]);
    expect(again.datasets.joiningTables).toEqual([]);
  });

  it('a dry run lists what it would reap, keeps what a running workflow owns, and changes nothing', async () => {
    const before = await untouched();
    const report = await gcNow({ retention: '0', dryRun: true });
    expect(report.dryRun).toBe(true);
    expect(report.commits.reaped.map((c) => c.commitId)).toEqual([unnamed.id]);
    expect(report.commits.kept).toEqual([expect.objectContaining({ commitId: orphan.id, reason: expect.stringMatching(/still running/) })]);
    expect(report.datasets.reaped.map((d) => d.trainingDatasetId)).toEqual([unusedDatasetId]);
    expect(report.datasets.kept).toEqual([expect.objectContaining({ trainingDatasetId: buildingDatasetId, reason: expect.stringMatching(/still running/) })]);
    expect(report.datasets.joiningKept).toBeUndefined();
    expect(report.datasets.joiningTables).toEqual([joining]);

    // Nothing changed.
    expect((await features.getCommit(orphan.id)).status).toBe('staging');
    expect((await features.getCommit(unnamed.id)).status).toBe('staging');
    expect(await tableExists(db.knex, groupTables('events', 1).commit(orphan.id))).toBe(true);
    expect(await tableExists(db.knex, groupTables('scores', 1).commit(unnamed.id))).toBe(true);
    expect((await training.dataset(unusedDatasetId)).status).toBe('ready');
    expect(await tableExists(db.knex, `td_${unusedDatasetId}`)).toBe(true);
    expect(await tableExists(db.knex, joining)).toBe(true);
    expect(await untouched()).toEqual(before);
  });

  it('`fti gc --dry-run --json` prints the same report', async () => {
    const report = await runFtiJson<GcReport>(['gc', '--retention', '0', '--dry-run'], { prefix: temporal.prefix, schema: db.schema });
    expect(report.counts).toEqual({ commitsReaped: 1, commitsKept: 1, datasetsReaped: 1, datasetsKept: 1, joiningTables: 1 });
    expect(report.commits.reaped[0]?.commitId).toBe(unnamed.id);
    expect((await features.getCommit(unnamed.id)).status).toBe('staging');
  });

  it('keeps a dataset a running training pipeline was handed, and scratch tables while one runs', async () => {
    const record = await features.registerView(view);
    const handedDatasetId = (await training.createDataset(record, { idempotencyKey: uniqueId('handed') })).id;
    // Trains on an existing dataset; with no GPU worker it waits at the train step, running.
    const handle = await temporal.client.workflow.start(trainingPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('train'),
      args: [{ featureView: 'fraud_view', model: 'fraud_model', trainingDatasetId: handedDatasetId }],
    });
    const state = temporalWorkflowState(temporal.client, temporal.cpuQueue);
    // Visibility (what the list query reads) catches up with the start within a moment.
    await vi.waitFor(async () => expect(await state.runningTrainings()).toEqual({ count: 1, datasetIds: [handedDatasetId] }), { timeout: 15_000, interval: 250 });
    try {
      const report = await gcNow({ retention: '0', dryRun: true });
      expect(report.datasets.kept).toContainEqual(expect.objectContaining({ trainingDatasetId: handedDatasetId, reason: 'a running training pipeline was handed it' }));
      expect(report.datasets.joiningTables).toEqual([]);
      expect(report.datasets.joiningKept).toMatch(/training pipeline is running/);
    } finally {
      await handle.terminate('test: done');
    }
    await vi.waitFor(async () => expect((await state.runningTrainings()).count).toBe(0), { timeout: 15_000, interval: 250 });
  });

  it('once the run is terminated, the gc workflow reaps its staging commit, unused datasets and scratch tables, and nothing else', async () => {
    const before = await untouched();
    await temporal.client.workflow.getHandle(runningWorkflowId).terminate('test: a feature run killed mid-write');

    const report = await temporal.client.workflow.execute(gc, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('gc'), args: [{ retention: '0' }] });
    // The two staging attempts; the unused, the formerly building and the formerly handed datasets.
    expect(report.counts).toEqual({ commitsReaped: 2, commitsKept: 0, datasetsReaped: 3, datasetsKept: 0, joiningTables: 1 });

    // The terminated run's attempt: failed with the reap reason, its table (and staged rows) gone.
    const reaped = await features.getCommit(orphan.id);
    expect(reaped.status).toBe('failed');
    expect(reaped.error).toMatch(/^reaped by fti gc: staging older than the retention \(0\), its workflow run .* is closed/);
    expect(await tableExists(db.knex, groupTables('events', 1).commit(orphan.id))).toBe(false);
    const manual = await features.getCommit(unnamed.id);
    expect(manual.status).toBe('failed');
    expect(manual.error).toMatch(/it names no workflow run/);
    expect(await tableExists(db.knex, groupTables('scores', 1).commit(unnamed.id))).toBe(false);

    // Unused datasets: their tables dropped, and reading one says what happened.
    for (const datasetId of [unusedDatasetId, buildingDatasetId]) {
      expect(await tableExists(db.knex, `td_${datasetId}`)).toBe(false);
      await expect(training.dataset(datasetId)).rejects.toThrow(new RegExp(`training dataset ${datasetId} was reaped by fti gc at .*its table td_${datasetId} was dropped`));
    }
    expect(await tableExists(db.knex, joining)).toBe(false);

    // Committed rows and the dataset a model version names: untouched.
    for (const c of committed) expect((await features.getCommit(c.commit.id)).status).toBe('committed');
    expect(await untouched()).toEqual(before);
    expect((await training.dataset(usedDatasetId)).status).toBe('ready');

    // Idempotent: a second run finds nothing.
    const again = await gcNow({ retention: '0' });
    expect(again.counts).toEqual({ commitsReaped: 0, commitsKept: 0, datasetsReaped: 0, datasetsKept: 0, joiningTables: 0 });
  });

  it('keeps td_joining_* tables while a dataset may be being built, and drops one first seen longer ago than the retention', async () => {
    await db.knex.raw('create unlogged table ?? (x int)', [joining]);
    const building = await training.reapDatasets({ retention: '0', buildsRunning: true });
    expect(building.joiningTables).toEqual([]);
    expect(building.joiningKept).toMatch(/training pipeline is running/);
    expect(await tableExists(db.knex, joining)).toBe(true);

    await db.knex.raw(`comment on table ?? is 'fti gc: first seen at 2020-01-01T00:00:00.000Z'`, [joining]);
    const idle = await training.reapDatasets({ retention: '1d', buildsRunning: false });
    expect(idle.joiningTables).toEqual([joining]);
    expect(await tableExists(db.knex, joining)).toBe(false);
  });

  it('the compaction workflow and `fti compact` (as the worker role) rewrite the partitions written since, leaving every row as it was', async () => {
    const before = await untouched();
    const partitions = ((await db.knex.raw(`select count(*)::int as n from pg_inherits where inhparent in (to_regclass('fg_events_v1'), to_regclass('fg_scores_v1'))`)) as { rows: Array<{ n: number }> }).rows[0]?.n ?? 0;
    expect(partitions).toBeGreaterThan(0);
    // Every range here is its group's newest: left alone unless asked for.
    const closedOnly = await temporal.client.workflow.execute(compaction, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('compaction'), args: [{}] });
    expect(closedOnly.counts).toMatchObject({ partitionsCompacted: 0, partitionsSkipped: partitions });
    const report = await temporal.client.workflow.execute(compaction, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('compaction'), args: [{ includeOpen: true }] });
    expect(report.counts).toMatchObject({ partitionsCompacted: partitions, partitionsSkipped: 0 });
    expect(await untouched()).toEqual(before);
    // Nothing written since.
    const again = await runFtiJson<CompactionReport>(['compact', 'events', '--include-open'], { prefix: temporal.prefix, schema: db.schema });
    expect(again.counts.partitionsCompacted).toBe(0);
    expect(again.groups.map((g) => g.featureGroup)).toEqual(['events']);
  });
});
