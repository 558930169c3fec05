/**
 * The feature pipeline on all 3M flights (flights-3m.parquet) through the real
 * workflow and a real CPU worker process, beside its baseline measured in the same
 * run: hyparquet parse + raw COPY of the same rows + the same exact windows on
 * knowledge time (airport_delays v3) as one plain SQL statement. Also per stage (from the workflow's activity timings) and the worker's
 * peak RSS. Baseline SQL is written out here on purpose: it is the yardstick.
 */
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { startWorkerProcess } from '../../cli/services/worker-process.ts';
import { taskQueue } from '../../core/task-queues.ts';
import { FLIGHTS_3M_PARQUET } from '../../examples/flights/data.ts';
import { createKnex, migrate } from '../../registry/db/index.ts';
import { featurePipeline } from '../../workflows/index.ts';
import { median, round, timeRatio, type BenchContext, type BenchPart } from '../harness.ts';

/** A workflow's history, as the client fetches it. */
type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

const featuresPart: BenchPart = async (ctx) => {
  const baselines: Array<{ parse: number; copy: number; aggregate: number; rows: number }> = [];
  const pipelines: Array<Awaited<ReturnType<typeof runPipeline>>> = [];
  // Warm-up: one baseline and one pipeline run on a single row group.
  await runBaseline(ctx, 1);
  await runPipeline(ctx, 'warmup', { start: '2001-01-01T00:00:00Z', end: '2001-01-08T00:00:00Z' });
  for (let i = 0; i < RUNS; i++) {
    baselines.push(await runBaseline(ctx));
    pipelines.push(await runPipeline(ctx, `run${i}`));
    ctx.log(`features run ${i + 1}/${RUNS}`, { baseline: baselines.at(-1), pipeline: { seconds: pipelines.at(-1)?.seconds, rssMb: pipelines.at(-1)?.peakRssMb } });
  }
  const baseline = median(baselines.map((b) => b.parse + b.copy + b.aggregate));
  const seconds = median(pipelines.map((p) => p.seconds));
  const rows = pipelines[0]?.rows ?? 0;
  const stage = (name: keyof (typeof pipelines)[number]["stages"]) => round(median(pipelines.map((p) => p.stages[name])), 2);
  return [
    {
      name: 'feature_pipeline',
      value: round(seconds, 2),
      unit: 's',
      rows,
      baseline: 'parse + raw COPY + the same exact windows as one raw SQL statement',
      baseline_value: round(baseline, 2),
      ratio: timeRatio(seconds, baseline),
      details: {
        rowsPerSecond: Math.round(rows / seconds),
        baselineParts: {
          parse: round(median(baselines.map((b) => b.parse)), 2),
          copy: round(median(baselines.map((b) => b.copy)), 2),
          aggregate: round(median(baselines.map((b) => b.aggregate)), 2),
        },
        stages: {
          'flights: ingest partitions (parse, transform, COPY; parallel)': stage('ingest'),
          'flights: commit (expectations, index, statistics, attach, online)': stage('commit'),
          'airport_delays: aggregate partitions (read, computed in the worker, written back; parallel)': stage('aggregate'),
          'airport_delays: commit': stage('aggregateCommit'),
        },
        commitStepsMs: pipelines.at(-1)?.commitStepsMs,
        runs: pipelines.map((p) => round(p.seconds, 2)),
        baselineRuns: baselines.map((b) => round(b.parse + b.copy + b.aggregate, 2)),
      },
    },
    { name: 'feature_pipeline_rss', value: median(pipelines.map((p) => p.peakRssMb)), unit: 'MB', details: { of: 'the CPU worker process (VmHWM)', runs: pipelines.map((p) => p.peakRssMb) } },
  ];
};

/** Parse the file, COPY the same columns into a plain table, run the aggregate as one SQL statement. */
async function runBaseline(ctx: BenchContext, rowGroups?: number): Promise<{ parse: number; copy: number; aggregate: number; rows: number }> {
  const file = await asyncBufferFromFile(FLIGHTS_3M_PARQUET);
  const metadata = await parquetMetadataAsync(file);
  const groups = metadata.row_groups.slice(0, rowGroups ?? metadata.row_groups.length);
  let t0 = performance.now();
  const parsed: unknown[][][] = [];
  let start = 0;
  for (const g of groups) {
    const n = Number(g.num_rows);
    await parquetRead({ file, metadata, compressors, rowStart: start, rowEnd: start + n, rowFormat: 'array', onComplete: (rows) => parsed.push(rows as unknown[][]) });
    start += n;
  }
  const parse = (performance.now() - t0) / 1000;

  // The same ten columns the flights group stores, as COPY text (built before timing).
  const chunks: string[] = [];
  let rowNumber = 0;
  for (const rows of parsed) {
    let chunk = '';
    for (const [date, delay, distance, origin, destination] of rows as Array<[Date, bigint, bigint, string, string]>) {
      const d = Number(delay);
      const departed = new Date(date.getTime() + Math.max(d, 0) * 60_000).toISOString();
      chunk += `${rowNumber++}\t${date.toISOString()}\t${origin}\t${destination}\t${Number(distance)}\t${d}\t${d > 15 ? 't' : 'f'}\t${date.getUTCHours()}\t${date.getUTCDay()}\t${departed}\n`;
      if (chunk.length > 1 << 18) {
        chunks.push(chunk);
        chunk = '';
      }
    }
    if (chunk) chunks.push(chunk);
  }
  parsed.length = 0;
  const knex = ctx.knex;
  await knex.raw('drop table if exists bench_flights_raw, bench_airport_raw');
  await knex.raw(
    'create table bench_flights_raw (flight_id bigint, event_time timestamptz, origin text, destination text, distance double precision, delay double precision, delayed boolean, hour bigint, weekday bigint, departed_at timestamptz)',
  );
  const client = (await knex.client.acquireConnection()) as pg.PoolClient;
  t0 = performance.now();
  try {
    await pipeline(Readable.from(chunks), client.query(copyFrom('copy bench_flights_raw from stdin')));
  } finally {
    await knex.client.releaseConnection(client);
  }
  const copy = (performance.now() - t0) / 1000;
  chunks.length = 0;

  t0 = performance.now();
  await knex.raw(exactWindowsSql());
  const aggregate = (performance.now() - t0) / 1000;
  await knex.raw('drop table if exists bench_flights_raw, bench_airport_raw');
  return { parse, copy, aggregate, rows: rowNumber };
}

/**
 * airport_delays v3 by hand, as one statement: the same exact windows on knowledge
 * time that the pipeline computes (registry/feature-store/aggregates.ts), written out
 * for these four windows and two inputs. Every flight enters each window from just
 * after its scheduled time, or from when it departed if that was later (if it departed
 * before leaving the window), and leaves the window when its scheduled time falls out
 * of it; changes are summed per (airport, instant), and running sums give each
 * window's state after every change point.
 */
function exactWindowsSql(): string {
  const windows = [
    ['1h', '1 hour'],
    ['2h', '2 hours'],
    ['24h', '24 hours'],
    ['7d', '7 days'],
  ] as const;
  // Per window: flights, then the sum and count of delay, then of delayed.
  const columns = (w: string) => [`n_${w}`, `sd_${w}`, `cd_${w}`, `ss_${w}`, `cs_${w}`];
  const values = (when: string, sign: string) => [`${sign}1`, `${sign}coalesce(delay, 0)`, `${sign}(delay is not null)::int`, `${sign}coalesce(delayed, 0)`, `${sign}(delayed is not null)::int`].map((v) => `case when ${when} then ${v} else 0 end`);
  const zeros = (w: string) => columns(w).map((c) => `0 as ${c}`);
  const enters = windows.flatMap(([w, interval]) => values(`ta <= te + interval '${interval}'`, '').map((v, i) => `${v} as ${columns(w)[i]}`));
  const exits = windows.map(
    ([w, interval]) =>
      `select airport, te + interval '${interval}' as t, ${windows.flatMap(([other]) => (other === w ? values('true', '-').map((v, i) => `${v} as ${columns(w)[i]}`) : zeros(other))).join(', ')} from src where ta <= te + interval '${interval}'`,
  );
  const running = windows.flatMap(([w]) => columns(w).map((c) => `sum(sum(${c})) over a as ${c}`));
  const outputs = windows.flatMap(([w]) => [`(sd_${w} / nullif(cd_${w}, 0))::double precision as delay_mean_${w}`, `(ss_${w} / nullif(cs_${w}, 0))::double precision as delayed_share_${w}`, `n_${w}::bigint as flights_${w}`]);
  return `
    create table bench_airport_raw as
    with src as materialized (
      select origin as airport, event_time as te, departed_at as ta, delay, delayed::int::double precision as delayed from bench_flights_raw
    )
    select airport, t as event_time, ${outputs.join(', ')}
    from (
      select airport, t, ${running.join(', ')}
      from (
        select airport, case when ta > te then ta - interval '1 microsecond' else te end as t, ${enters.join(', ')} from src
        union all ${exits.join(' union all ')}
      ) changes
      group by airport, t
      window a as (partition by airport order by t rows unbounded preceding)
    ) r`;
}

/**
 * The real thing: CPU worker processes (one unless asked) on a fresh schema,
 * featurePipeline for flights then airport_delays. Also which worker ran each partition.
 */
export async function runPipeline(ctx: BenchContext, label: string, window: { start?: string; end?: string } = {}, workerCount = 1) {
  const schema = `fti_bench_features_${label}`;
  const knex = createKnex({ url: ctx.databaseUrl, schema });
  await knex.raw('drop schema if exists ?? cascade', [schema]);
  await migrate(knex, schema);
  const { address } = await ctx.temporal();
  const prefix = `bench-${label}-${Date.now()}-`;
  const env = { ...process.env, DATABASE_URL: ctx.databaseUrl, TEMPORAL_ADDRESS: address, FTI_SCHEMA: schema, FTI_TASK_QUEUE_PREFIX: prefix };
  const workers = await Promise.all(Array.from({ length: workerCount }, () => startWorkerProcess('cpu', { env })));
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection });
    const t0 = performance.now();
    const handles: Array<WorkflowHandle<typeof featurePipeline>> = [];
    let rows = 0;
    for (const featureGroup of ['flights', 'airport_delays']) {
      const handle = await client.workflow.start(featurePipeline, { taskQueue: taskQueue('cpu', prefix), workflowId: `${prefix}${featureGroup}`, args: [{ featureGroup, ...window }] });
      const result = await handle.result();
      if (featureGroup === 'flights') rows = result.rowsIn;
      handles.push(handle);
    }
    const seconds = (performance.now() - t0) / 1000;
    const histories = await Promise.all(handles.map((h) => h.fetchHistory()));
    const [flights, airports] = histories.map(activitySeconds);
    const partitionsByWorker = partitionWorkers(histories, workers.map((w) => w.process.pid ?? 0));
    const commitSteps = (await knex('feature_commits').join('feature_groups', 'feature_groups.id', 'feature_commits.feature_group_id').select('feature_groups.name', 'feature_commits.validation_report')) as Array<{
      name: string;
      validation_report: { timingsMs?: Record<string, number> } | null;
    }>;
    return {
      seconds,
      rows,
      commitStepsMs: Object.fromEntries(commitSteps.map((c) => [c.name, c.validation_report?.timingsMs ?? {}])),
      peakRssMb: Math.max(...workers.map((w) => w.peakRssMb() ?? 0)),
      partitionsByWorker,
      stages: { ingest: flights?.ingestPartition ?? 0, commit: flights?.commitFeatures ?? 0, aggregate: airports?.aggregatePartition ?? 0, aggregateCommit: airports?.commitFeatures ?? 0 },
    };
  } finally {
    await connection.close();
    await Promise.all(workers.map((w) => w.stop()));
    await knex.raw('drop schema if exists ?? cascade', [schema]);
    await knex.destroy();
  }
}

/** How many partitions (ingest and aggregate) each worker process ran, by its pid, from the histories (the worker identity is pid@host). */
function partitionWorkers(histories: History[], pids: number[]): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(pids.map((pid) => [String(pid), 0]));
  for (const history of histories) {
    const types = new Map<number, string>();
    for (const e of history.events ?? []) {
      const scheduled = e.activityTaskScheduledEventAttributes;
      if (scheduled) types.set(Number(e.eventId), scheduled.activityType?.name ?? '');
      const started = e.activityTaskStartedEventAttributes;
      if (started && /Partition$/.test(types.get(Number(started.scheduledEventId)) ?? '')) {
        const pid = (started.identity ?? '').split('@')[0] ?? '';
        counts[pid] = (counts[pid] ?? 0) + 1;
      }
    }
  }
  return counts;
}

/** Wall time per activity type (first schedule to last completion), from the workflow history. */
export function activitySeconds(history: History): Record<string, number> {
  const scheduled = new Map<string, { type: string; at: number }>();
  const spans = new Map<string, { from: number; to: number }>();
  const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
  for (const e of history.events ?? []) {
    const id = String(e.eventId);
    if (e.activityTaskScheduledEventAttributes) scheduled.set(id, { type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at: ms(e.eventTime) });
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const s = scheduled.get(String(done.scheduledEventId));
      if (!s) continue;
      const span = spans.get(s.type) ?? { from: s.at, to: 0 };
      spans.set(s.type, { from: Math.min(span.from, s.at), to: Math.max(span.to, ms(e.eventTime)) });
    }
  }
  return Object.fromEntries([...spans].map(([type, span]) => [type, (span.to - span.from) / 1000]));
}

export default featuresPart;
