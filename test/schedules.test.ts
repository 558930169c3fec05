import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planBackfill } from '../client/backfill.ts';
import { FtiClient } from '../client/fti-client.ts';
import type { ScheduledRun, ScheduleSummaryView, ScheduleView } from '../client/schedules.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import type { FeaturePipelineResult } from '../activities/feature.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { runFti, runFtiJson } from './helpers/cli.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const HOUR = 3_600_000;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-schedules-'));

// Page views every 15 minutes over the last six hours (and the current one), so that
// "the hour before now" (a trigger) and older hours (a backfill) all hold rows.
const thisHour = Math.floor(Date.now() / HOUR) * HOUR;
const views = Array.from({ length: 7 * 4 }, (_, i) => thisHour - 6 * HOUR + i * 15 * 60_000).flatMap((t, i) => [
  { page: 'home', at: new Date(t).toISOString(), views: i },
  { page: 'docs', at: new Date(t + 60_000).toISOString(), views: 2 * i },
]);
const viewsFile = path.join(scratch, 'page-views.ndjson');
fs.writeFileSync(viewsFile, views.map((r) => JSON.stringify(r)).join('\n'));
const rowsIn = (start: number, end: number) => views.filter((r) => Date.parse(r.at) >= start && Date.parse(r.at) < end);

const pageViews = defineFeatureGroup({
  name: 'page_views',
  version: 1,
  entityKeys: ['page'],
  eventTime: 'at',
  features: { page: 'string', at: 'timestamp', views: 'int' },
  source: { kind: 'ndjson', path: viewsFile },
});

async function until<T>(what: string, get: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('schedules: hourly feature windows from fire times (real Temporal + Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let store: FeatureStore;
  let fti: FtiClient;
  let scheduleId: string;

  beforeAll(async () => {
    db = await createTestDb('schedules');
    temporal = await createTestTemporal('schedules');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project: defineProject({ featureGroups: [pageViews] }) });
    store = new FeatureStore({ knex: db.knex });
    fti = FtiClient.fromClient(temporal.client, { taskQueuePrefix: temporal.prefix });
    scheduleId = uniqueId('page-views');
  });

  afterAll(async () => {
    await fti?.schedules.delete(scheduleId).catch(() => undefined);
    await worker?.stop();
    await temporal?.close();
    await db?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  /** Waits until the schedule has started `count` runs, then for every one of them to complete. */
  async function runsCompleted(count: number): Promise<Array<ScheduledRun & { result: FeaturePipelineResult }>> {
    const runs = await until(`${count} scheduled runs`, async () => {
      const { recentRuns } = await fti.schedules.describe(scheduleId);
      return recentRuns.length >= count ? recentRuns : undefined;
    });
    return Promise.all(runs.map(async (r) => ({ ...r, result: await (await fti.getRun('feature', r.workflowId, r.runId)).result() })));
  }

  it('fti schedule create: hourly, 1h windows, BUFFER_ALL, 1d catch-up by default', async () => {
    // Created paused, so the hourly clock cannot add a run while the test runs;
    // trigger and backfill are manual actions and work on a paused schedule.
    const view = await runFtiJson<ScheduleView>(['schedule', 'create', 'feature', '--group', 'page_views', '--version', '1', '--id', scheduleId, '--paused'], { prefix: temporal.prefix });
    expect(view).toMatchObject({
      scheduleId,
      pipeline: 'feature',
      workflowType: 'featurePipeline',
      taskQueue: `${temporal.prefix}fti-cpu`,
      every: '1h',
      window: '1h',
      overlap: 'BUFFER_ALL',
      catchupWindow: '1d',
      paused: true,
      input: { featureGroup: 'page_views', version: 1, scheduleWindow: '1h' },
      recentRuns: [],
    });
  });

  it('trigger computes the hour before now; backfilling two hours recomputes exactly those two windows', async () => {
    await fti.schedules.trigger(scheduleId);
    const [triggered] = await runsCompleted(1);
    if (!triggered) throw new Error('no triggered run');

    const from = new Date(thisHour - 5 * HOUR);
    const to = new Date(thisHour - 3 * HOUR);
    const backfill = await fti.schedules.backfill(scheduleId, { from, to });
    expect(backfill.overlap).toBe('ALLOW_ALL');
    expect(backfill.fires).toEqual([new Date(thisHour - 4 * HOUR), new Date(thisHour - 3 * HOUR)]);
    const runs = await runsCompleted(3);

    // The fire time (to the second, as Temporal records it) is the end of each run's window.
    const fireEnds = runs.map((r) => Math.floor(r.scheduledAt.getTime() / 1000) * 1000).sort((a, b) => a - b);
    const expectedWindows = [
      { start: thisHour - 5 * HOUR, end: thisHour - 4 * HOUR },
      { start: thisHour - 4 * HOUR, end: thisHour - 3 * HOUR },
      { start: fireEnds[2]! - HOUR, end: fireEnds[2]! },
    ];
    expect(fireEnds).toEqual(expectedWindows.map((w) => w.end));

    const group = await store.group('page_views', 1);
    const commits = (await store.commits(group, { status: 'committed' })).sort((a, b) => a.windowEnd!.getTime() - b.windowEnd!.getTime());
    expect(commits.map((c) => ({ start: c.windowStart?.getTime(), end: c.windowEnd?.getTime() }))).toEqual(expectedWindows);
    for (const [i, c] of commits.entries()) {
      const w = expectedWindows[i]!;
      const expected = rowsIn(w.start, w.end);
      expect(expected.length).toBeGreaterThan(0);
      expect(c.rowsCommitted).toBe(expected.length);
      expect(c.minEventTime!.getTime()).toBe(Math.min(...expected.map((r) => Date.parse(r.at))));
      expect(c.maxEventTime!.getTime()).toBe(Math.max(...expected.map((r) => Date.parse(r.at))));
      // Each commit was made by one of the schedule's runs, named after the schedule.
      expect(runs.map((r) => r.result.commitId)).toContain(c.id);
      expect(c.workflowId).toMatch(new RegExp(`^${scheduleId}-`));
    }
  });

  it('refuses a backfill whose bounds do not line up with the windows', async () => {
    await expect(fti.schedules.backfill(scheduleId, { from: new Date(thisHour - 5 * HOUR + 30 * 60_000), to: new Date(thisHour - 3 * HOUR) })).rejects.toThrow(
      /--from .* does not line up with the schedule's windows \(every 1h\); the nearest are/,
    );
    expect(() => planBackfill({ every: HOUR, offset: 0 }, HOUR, new Date(thisHour), new Date(thisHour + 30 * 60_000))).toThrow(/--to .* does not line up/);
    expect(() => planBackfill({ every: HOUR, offset: 0 }, HOUR, new Date(thisHour), new Date(thisHour))).toThrow(/backfill range is empty/);
    // A sliding span (daily runs on 30 days): one run per day in (from, to].
    const DAY = 24 * HOUR;
    const daily = planBackfill({ every: DAY, offset: 2 * HOUR }, 30 * DAY, new Date(Date.UTC(2024, 0, 1, 2)), new Date(Date.UTC(2024, 0, 3, 2)));
    expect(daily.fires).toEqual([new Date(Date.UTC(2024, 0, 2, 2)), new Date(Date.UTC(2024, 0, 3, 2))]);
    expect(daily.windows[0]).toEqual({ start: new Date(Date.UTC(2023, 11, 3, 2)), end: new Date(Date.UTC(2024, 0, 2, 2)) });
  });

  it('pause, unpause and describe', async () => {
    const active = await fti.schedules.unpause(scheduleId);
    expect(active.paused).toBe(false);
    // Unpaused, it fires on the hour (UTC).
    expect(active.nextFires[0]?.getTime()).toBe(Math.ceil(Date.now() / HOUR) * HOUR);
    const paused = await fti.schedules.pause(scheduleId, 'maintenance');
    expect(paused).toMatchObject({ paused: true, note: 'maintenance', actionsTaken: 3 });
  });

  it('fti schedule list shows this deployment’s schedules; delete removes it', async () => {
    // Listing is eventually consistent: wait until the list shows the schedule as it is now.
    await until('the paused schedule in the list', async () => ((await fti.schedules.list()).some((s) => s.scheduleId === scheduleId && s.paused) ? true : undefined));
    const listed = await runFtiJson<ScheduleSummaryView[]>(['schedule', 'list'], { prefix: temporal.prefix });
    expect(listed.map((s) => s.scheduleId)).toEqual([scheduleId]);
    expect(listed[0]).toMatchObject({ pipeline: 'feature', every: '1h', paused: true, note: 'maintenance' });

    expect(await runFtiJson(['schedule', 'delete', scheduleId], { prefix: temporal.prefix })).toEqual({ scheduleId, deleted: true });
    const gone = await runFti(['schedule', 'describe', scheduleId], { prefix: temporal.prefix });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`fti: no schedule ${scheduleId}`);
  });
});
