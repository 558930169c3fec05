/**
 * A year of hourly commits to one group: what an hourly schedule leaves after a year.
 * `BENCH_HOURLY_COMMITS` commits (default 8,760) of `BENCH_HOURLY_ROWS` sensor readings
 * each (default 100), each one hour's window, through the store's own commit path (COPY
 * into the commit's staging table, then the commit), plus a daily commit of labelled
 * inspections (the spine of a view that joins the readings).
 *
 * Once the first month is complete and again after the last commit, the same work on
 * one day of data is timed: a snapshot read of the day's readings, a training dataset
 * of the day's inspections, and a commit. (Both probes read a full month's partition:
 * after a single day, January's partition would hold a day of rows, not a month.) With event-time partitions the commits share twelve
 * monthly partitions, so the year's last day should cost what its first did: each
 * "end" figure has the "start" one as its baseline (issue 14 target: ratio ≤ 1.2).
 * Last, the year's partitions are compacted, and one sensor's month read counts its
 * pages before and after.
 * Runs on a schema of its own, only when named (`--only hourly`).
 */
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import { stagedCopy } from '../../features/staged-rows.ts';
import { defineFeatureGroup, type FeatureGroupDefinition } from '../../features/definitions.ts';
import type { FeatureValue } from '../../features/schema.ts';
import { defineFeatureView } from '../../features/views.ts';
import { createKnex, migrate } from '../../registry/db/index.ts';
import { FeatureStore, type FeatureGroupRecord } from '../../registry/feature-store/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { median, round, secondsFigure, type BenchPart, type Figure } from '../harness.ts';

const COMMITS = Number(process.env.BENCH_HOURLY_COMMITS ?? 8_760);
const SENSORS = Number(process.env.BENCH_HOURLY_ROWS ?? 100);
const REPEATS = 5;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const YEAR_START = Date.UTC(2025, 0, 1);
/** The last hour of January: the start probe runs once its partition is complete. */
const START_PROBE_HOUR = 31 * 24 - 1;

const readings = defineFeatureGroup({
  name: 'hourly_readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', temperature: 'float' },
  source: { kind: 'ndjson', path: '/dev/null' },
  availability: { lag: '1h' },
});
const inspections = defineFeatureGroup({
  name: 'hourly_inspections',
  version: 1,
  entityKeys: ['inspection_id'],
  eventTime: 'at',
  features: { inspection_id: 'int', at: 'timestamp', sensor: 'string', failed: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'failed',
});
const view = defineFeatureView({
  name: 'hourly_inspection_view',
  version: 1,
  spine: inspections,
  label: 'failed',
  joins: [{ group: readings, on: { sensor: 'sensor' }, ttl: '1d' }],
  features: ['hourly_readings.temperature'],
});

type Row = Record<string, FeatureValue>;

/** A deterministic reading: a daily cycle per sensor plus a little hash noise. */
function temperature(sensor: number, hour: number): number {
  const noise = (((sensor * 2_654_435_761 + hour * 40_503) >>> 0) % 1000) / 1000;
  return Math.round((15 + 8 * Math.sin(((hour % 24) / 24) * 2 * Math.PI + sensor) + noise) * 100) / 100;
}

const hourlyPart: BenchPart = async (ctx) => {
  const schema = 'fti_bench_hourly';
  const knex = createKnex({ url: ctx.databaseUrl, schema });
  await knex.raw('drop schema if exists ?? cascade', [schema]);
  await migrate(knex, schema);
  try {
    return await run(ctx.log, knex);
  } finally {
    await knex.destroy();
  }
};

async function run(log: (msg: string, fields?: Record<string, unknown>) => void, knex: Knex): Promise<Figure[]> {
  const store = new FeatureStore({ knex });
  const readingGroup = await store.register(readings);
  const inspectionGroup = await store.register(inspections);
  const viewRecord = await store.registerView(view);
  const training = new TrainingStore({ knex });

  const commit = async (group: FeatureGroupRecord, def: FeatureGroupDefinition, rows: Row[], windowStart: Date, windowEnd: Date, availableAt: (row: Row) => Date): Promise<number> => {
    const attempt = await store.beginCommit(group, { idempotencyKey: `hourly-${def.name}-${windowStart.toISOString()}`, windowStart, windowEnd });
    await store.copyRows(group, attempt.id, stagedCopy(def.columns, rows.map((row, i) => ({ values: def.columns.map((c) => row[c.name] ?? null), rowNumber: i, availableAt: availableAt(row) }))));
    const outcome = await store.commit(group, { expectations: [], validation: 'strict' }, attempt.id);
    if (!outcome.ok) throw new Error(`commit ${attempt.id} of ${def.name} failed: ${JSON.stringify(outcome.report)}`);
    return attempt.id;
  };
  const commitHour = (hour: number) => {
    const start = new Date(YEAR_START + hour * HOUR);
    const rows = Array.from({ length: SENSORS }, (_, s): Row => ({ sensor: `s${s}`, at: new Date(start.getTime() + ((s * 36_000) % HOUR)), temperature: temperature(s, hour) }));
    return commit(readingGroup, readings, rows, start, new Date(start.getTime() + HOUR), (row) => new Date((row.at as Date).getTime() + HOUR));
  };
  const commitDay = (day: number) => {
    const start = new Date(YEAR_START + day * DAY);
    const rows = Array.from({ length: SENSORS }, (_, s): Row => ({ inspection_id: day * SENSORS + s, at: new Date(start.getTime() + 12 * HOUR + s * 1000), sensor: `s${s}`, failed: temperature(s, day * 24 + 11) > 20 }));
    return commit(inspectionGroup, inspections, rows, start, new Date(start.getTime() + DAY), (row) => row.at as Date);
  };

  /** The same work on one day of data: read its readings, build a dataset of its inspections, commit one more hour (timed, median of REPEATS). */
  const probe = async (day: number, label: string) => {
    const start = new Date(YEAR_START + day * DAY);
    const end = new Date(start.getTime() + DAY);
    const reads: number[] = [];
    const builds: number[] = [];
    let rows = 0;
    for (let i = 0; i < REPEATS; i++) {
      let t0 = performance.now();
      rows = (await store.read(readingGroup, { start, end }).toArray()).length;
      reads.push((performance.now() - t0) / 1000);
      t0 = performance.now();
      const dataset = await training.createDataset(viewRecord, { idempotencyKey: `hourly-${label}-${i}`, start, end });
      builds.push((performance.now() - t0) / 1000);
      await knex.raw('drop table ??', [dataset.tableName]);
    }
    const partitions = ((await knex.raw(`select count(*)::int as n from pg_inherits where inhparent = to_regclass('fg_hourly_readings_v1')`)) as { rows: Array<{ n: number }> }).rows[0]?.n ?? 0;
    log(`hourly: ${label}`, { day, readRows: rows, readSeconds: round(median(reads), 4), datasetSeconds: round(median(builds), 3), partitions });
    return { reads, builds, rows, partitions };
  };

  const commitSeconds: number[] = [];
  let atStart: Awaited<ReturnType<typeof probe>> | undefined;
  const started = performance.now();
  for (let hour = 0; hour < COMMITS; hour++) {
    const t0 = performance.now();
    await commitHour(hour);
    commitSeconds.push((performance.now() - t0) / 1000);
    if (hour % 24 === 23) await commitDay(Math.floor(hour / 24));
    if (hour === START_PROBE_HOUR) atStart = await probe(0, 'after the first month');
    if (hour % 720 === 719) log(`hourly: ${hour + 1} of ${COMMITS} commits`, { minutes: round((performance.now() - started) / 60_000, 1), lastCommitSeconds: round(commitSeconds.at(-1) ?? 0, 3) });
  }
  const lastDay = Math.floor(COMMITS / 24) - 1;
  if (!atStart || lastDay < 32) throw new Error(`the hourly bench needs more than a month of commits (BENCH_HOURLY_COMMITS ≥ 792), got ${COMMITS}`);
  const atEnd = await probe(lastDay, `after ${COMMITS} commits`);
  // Where a commit's time goes, first day against last (the commit's own step timings, medians in ms).
  const steps = async (order: 'asc' | 'desc') => {
    const reports = (await knex('feature_commits').where({ feature_group_id: readingGroup.id }).orderBy('id', order).limit(24).select('validation_report')) as Array<{ validation_report: { timingsMs?: Record<string, number> } | null }>;
    const names = [...new Set(reports.flatMap((r) => Object.keys(r.validation_report?.timingsMs ?? {})))];
    return Object.fromEntries(names.map((n) => [n, median(reports.map((r) => r.validation_report?.timingsMs?.[n] ?? 0))]));
  };
  // Compaction: one sensor's readings of a closed month (January), pages read before
  // and after the year's partitions are compacted. EXPLAIN's buffer counts are exact, not
  // timed: the hourly commits left that sensor's month on one page per commit.
  const monthStart = new Date(YEAR_START);
  const monthEnd = new Date(Date.UTC(2025, 1, 1));
  const entityMonthPages = async () => {
    const plan = (await knex.raw('explain (analyze, buffers, format json) select * from fg_hourly_readings_v1 where sensor = ? and at >= ? and at < ?', ['s7', monthStart, monthEnd])) as {
      rows: Array<{ 'QUERY PLAN': Array<{ Plan: { 'Shared Hit Blocks': number; 'Shared Read Blocks': number; 'Actual Rows': number } }> }>;
    };
    const top = plan.rows[0]?.['QUERY PLAN'][0]?.Plan;
    return { pages: (top?.['Shared Hit Blocks'] ?? 0) + (top?.['Shared Read Blocks'] ?? 0), rows: top?.['Actual Rows'] ?? 0 };
  };
  const beforeCompaction = await entityMonthPages();
  const t0 = performance.now();
  const compaction = await store.compact(readingGroup);
  const compactionSeconds = (performance.now() - t0) / 1000;
  const afterCompaction = await entityMonthPages();
  log('hourly: compaction', { partitions: compaction.compacted.length, seconds: round(compactionSeconds, 2), pagesBefore: beforeCompaction.pages, pagesAfter: afterCompaction.pages, rows: afterCompaction.rows });
  const details = { commits: COMMITS, rowsPerCommit: SENSORS, partitions: atEnd.partitions, totalMinutes: round((performance.now() - started) / 60_000, 1), commitStepsMsFirstDay: await steps('asc'), commitStepsMsLastDay: await steps('desc') };
  return [
    secondsFigure('hourly_snapshot_read_end', atEnd.reads, { what: 'the same read of one day once the first month was committed', samples: atStart.reads }, { rows: atEnd.rows, details, inMs: true }),
    secondsFigure('hourly_dataset_build_end', atEnd.builds, { what: 'the same dataset of one day once the first month was committed', samples: atStart.builds }, { rows: SENSORS, details, inMs: true }),
    secondsFigure('hourly_commit_end', commitSeconds.slice(-24), { what: 'the first day’s 24 hourly commits', samples: commitSeconds.slice(0, 24) }, { rows: SENSORS, details, inMs: true }),
    {
      name: 'hourly_entity_month_pages_compacted',
      value: afterCompaction.pages,
      unit: 'pages',
      rows: afterCompaction.rows,
      baseline: 'the same read before compaction',
      baseline_value: beforeCompaction.pages,
      ratio: round(afterCompaction.pages / Math.max(1, beforeCompaction.pages), 3),
      details: { compactionSeconds: round(compactionSeconds, 2), partitionsCompacted: compaction.compacted.length, skipped: compaction.skipped.length },
    },
  ];
}

export default hourlyPart;
