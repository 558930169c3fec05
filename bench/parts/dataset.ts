/**
 * Training-dataset creation for the flights view on all 3M flights (the spine),
 * beside the same point-in-time join written as a naive per-row LATERAL query over
 * the same offline tables, in the same run. Baseline SQL is written out here on
 * purpose: it is the yardstick.
 *
 * The same dataset is also built from a copy of the view that joins on event time
 * only (`pointInTime: 'event_time'`, the join before knowledge time): the cost of
 * joining on what was known is the ratio of the two (issue 12: at most 1.2).
 */
import { performance } from 'node:perf_hooks';
import { airportDelays, flightDelays, flights } from '../../examples/flights/definitions.ts';
import type { FeatureGroupDefinition } from '../../features/definitions.ts';
import { defineFeatureView, type FeatureRef, type FeatureViewDefinition } from '../../features/views.ts';
import { FeatureStore, spineThreadReads } from '../../registry/feature-store/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { addCpu, cpuSample, cpuUsed, type CpuUsed } from '../cpu.ts';
import { flightsFixture } from '../flights-fixture.ts';
import { median, round, secondsFigure, type BenchPart } from '../harness.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

/** `view` as defined, under another name, joining on event time only (what every join did before knowledge time). */
export function eventTimeCopy(view: FeatureViewDefinition, groups: FeatureGroupDefinition[], name: string): FeatureViewDefinition {
  const group = (n: string) => {
    const g = groups.find((x) => x.name === n);
    if (!g) throw new Error(`no definition of group ${n} for view ${view.name}`);
    return g;
  };
  const copy = defineFeatureView({
    name,
    version: view.version,
    description: `${view.name} v${view.version} joined on event time only (bench)`,
    spine: group(view.spine.group),
    label: view.label.name,
    joins: view.joins.map((j) => ({ group: group(j.group), on: j.on, ...(j.ttl ? { ttl: j.ttl } : {}) })),
    features: view.features.map((f): FeatureRef => ({ feature: `${f.group}.${f.feature}`, as: f.name, ...f.encoding })),
    pointInTime: 'event_time',
  });
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!same(copy.features, view.features) || !same(copy.joins, view.joins) || !same(copy.spine, view.spine)) throw new Error(`the event-time copy of ${view.name} differs from it beyond its join policy`);
  return copy;
}

const datasetPart: BenchPart = async (ctx) => {
  await flightsFixture(ctx);
  const store = new FeatureStore({ knex: ctx.knex });
  const view = await store.registerView(flightDelays);
  const eventTimeView = await store.registerView(eventTimeCopy(flightDelays, [flights, airportDelays], 'flight_delays_event_time'));
  const airportFeatures = flightDelays.features.filter((f) => f.group === 'airport_delays').map((f) => f.feature);
  const ours: number[] = [];
  const eventTime: number[] = [];
  const naive: number[] = [];
  let rows = 0;
  let eventTimeRows = 0;
  const stages: Record<string, number[]> = {};
  const stageCpu: Record<string, CpuUsed[]> = {};
  const windowPlan: number[] = [];
  // The warm-up's build: the first of this bench's fresh tables, so its joined group's segments are read from Postgres and written.
  let firstBuild: { seconds: number; stages: Record<string, number> } | undefined;
  const spineOnTwoThreads: boolean[] = [];
  const build = async (v: typeof view, key: string, timed = false, strategy?: 'window') => {
    const t0 = performance.now();
    // A stage may come more than once (the stream plan's steps, once per pass of chunks): summed per build.
    const build: Record<string, number> = {};
    // And the CPU each used, from the end of the stage before (a machine that is shared moves wall times more than CPU times).
    const cpu: Record<string, CpuUsed> = {};
    let last = cpuSample();
    const onStage = (stage: string, seconds: number) => {
      build[stage] = (build[stage] ?? 0) + seconds;
      const now = cpuSample();
      cpu[stage] = addCpu(cpu[stage], cpuUsed(last, now));
      last = now;
    };
    const threadReads = spineThreadReads();
    const dataset = await new TrainingStore({ knex: ctx.knex }).createDataset(v, { idempotencyKey: `${key}-${Date.now()}`, onStage, ...(strategy ? { strategy } : {}) });
    if (timed) {
      // Whether its spine was read on two threads (spine-helper.ts): its segment files all there, two cores.
      spineOnTwoThreads.push(spineThreadReads() > threadReads);
      for (const [stage, seconds] of Object.entries(build)) (stages[stage] ??= []).push(seconds);
      for (const [stage, used] of Object.entries(cpu)) (stageCpu[stage] ??= []).push(used);
    }
    const seconds = (performance.now() - t0) / 1000;
    if (!firstBuild && !strategy && v === view) firstBuild = { seconds, stages: Object.fromEntries(Object.entries(build).map(([stage, x]) => [stage, round(x, 2)])) };
    await ctx.knex.raw('drop table ??', [dataset.tableName]);
    return { seconds, rows: dataset.rowCounts.train + dataset.rowCounts.validation + dataset.rowCounts.test };
  };
  // Warm-up: one of each (caches, statistics).
  for (let i = -1; i < RUNS; i++) {
    const mine = await build(view, `bench-dataset-${i}`, i >= 0);
    rows = mine.rows;
    const before = await build(eventTimeView, `bench-dataset-event-time-${i}`);
    eventTimeRows = before.rows;
    // The same dataset by the SQL window plan (the default before the stream plan).
    const bySql = await build(view, `bench-dataset-window-${i}`, false, 'window');
    if (bySql.rows !== rows) ctx.log(`the window plan's dataset has ${bySql.rows} rows, the stream plan's ${rows}: they should be the same`);

    const t0 = performance.now();
    await ctx.knex.raw(
      `create table bench_naive_dataset as
       select f.flight_id, f.event_time, f.delayed, f.distance, f.hour, f.weekday, f.origin, ${airportFeatures.map((c) => `a.${c}`).join(', ')}
       from fg_flights_v${flights.version} f
       left join lateral (
         select ${airportFeatures.join(', ')} from fg_airport_delays_v${airportDelays.version} a
         where a.airport = f.origin and a.event_time < f.event_time and a._available_at <= f.event_time
         order by a.event_time desc limit 1
       ) a on true
       where f.delayed is not null`,
    );
    const baseline = (performance.now() - t0) / 1000;
    await ctx.knex.raw('drop table bench_naive_dataset');
    const lastStages = Object.fromEntries(Object.entries(stages).map(([stage, xs]) => [stage, round(xs.at(-1) ?? 0, 2)]));
    // Per stage, the CPU seconds of this process's main thread and of Postgres.
    const lastCpu = Object.fromEntries(Object.entries(stageCpu).map(([stage, xs]) => [stage, [round(xs.at(-1)?.mainThread ?? 0, 2), round(xs.at(-1)?.postgres ?? 0, 2)]]));
    ctx.log(`dataset run ${i + 1}/${RUNS}${i < 0 ? ' (warm-up)' : ''}`, { seconds: round(mine.seconds, 2), ...(i >= 0 ? { stages: lastStages, mainAndPostgresCpu: lastCpu, spineOnTwoThreads: spineOnTwoThreads.at(-1) } : {}), eventTimeJoin: round(before.seconds, 2), windowPlan: round(bySql.seconds, 2), naiveLateral: round(baseline, 2), rows, eventTimeRows });
    if (i >= 0) {
      ours.push(mine.seconds);
      eventTime.push(before.seconds);
      windowPlan.push(bySql.seconds);
      naive.push(baseline);
    }
  }
  if (eventTimeRows !== rows) ctx.log(`the event-time dataset has ${eventTimeRows} rows, the knowledge-time one ${rows}: they should share the spine`);
  const knowledgeSeconds = median(ours);
  const eventTimeSeconds = median(eventTime);
  const ratio = round(knowledgeSeconds / eventTimeSeconds, 3);
  return [
    secondsFigure('training_dataset', ours, { what: 'the same join as a naive per-row LATERAL query', samples: naive }, {
      rows,
      details: {
        includes: 'point-in-time join (knowledge time: rows known at or before each spine row) by the stream plan, splits, shuffled materialization (one partition per chunk, in shuffle order, merged when read), train-split statistics',
        // Where the time goes (medians, seconds): the join (of which the stream plan's steps: reading the spine chunks, reading the joined group once, sorting each chunk into shuffle order and writing its rows back by binary COPY); the split counts and the train-split statistics, from the chunks side by side; attaching the chunks as the dataset table's partitions.
        stageSeconds: Object.fromEntries(Object.entries(stages).map(([stage, xs]) => [stage, round(median(xs), 2)])),
        // The CPU seconds each stage used (medians): this process (every thread), its main thread, and every Postgres process
        // on the machine, from the end of the stage before; 'join' holds what its steps did not (creating the chunks' tables, committing them).
        spineOnTwoThreads,
        stageCpuSeconds: Object.fromEntries(
          Object.entries(stageCpu).map(([stage, xs]) => [stage, { process: round(median(xs.map((x) => x.process)), 2), mainThread: round(median(xs.map((x) => x.mainThread)), 2), postgres: round(median(xs.map((x) => x.postgres)), 2) }]),
        ),
      },
    }),
    {
      name: 'training_dataset_first_build',
      value: round(firstBuild?.seconds ?? Number.NaN, 2),
      unit: 's',
      rows,
      details: {
        of: 'the warm-up build of training_dataset: the first after its groups were committed, so the joined group is read from Postgres and its column segments written (registry/feature-store/segments.ts); the builds training_dataset times read them from disk',
        stageSeconds: firstBuild?.stages ?? {},
        vsLaterBuilds: round((firstBuild?.seconds ?? Number.NaN) / median(ours), 3),
      },
    },
    {
      name: 'training_dataset_window_plan',
      value: round(median(windowPlan), 2),
      unit: 's',
      rows,
      details: {
        of: 'the same dataset built by the SQL window plan (strategy: window): one sort of the spine and the joined rows together per chunk, then a sort into shuffle order',
        runs: windowPlan.map((x) => round(x, 2)),
        streamVsWindow: round(median(ours) / median(windowPlan), 3),
      },
    },
    {
      name: 'training_dataset_event_time',
      value: round(eventTimeSeconds, 2),
      unit: 's',
      rows: eventTimeRows,
      details: {
        of: 'the same dataset from a copy of the view with pointInTime: event_time (latest earlier row, known or not: the join before knowledge time)',
        view: eventTimeView.definition.name,
        runs: eventTime.map((x) => round(x, 2)),
        baselineOf: 'training_dataset_knowledge_vs_event_time',
      },
    },
    {
      name: 'training_dataset_knowledge_vs_event_time',
      value: ratio,
      unit: 'ratio',
      rows,
      baseline: 'training_dataset_event_time (the same dataset joined on event time only), as 1',
      baseline_value: 1,
      ratio,
      details: {
        of: 'training_dataset seconds ÷ training_dataset_event_time seconds, same run (issue 12 target: ≤ 1.2)',
        knowledgeTimeSeconds: round(knowledgeSeconds, 2),
        eventTimeSeconds: round(eventTimeSeconds, 2),
        runs: ours.map((x, k) => round(x / (eventTime[k] as number), 3)),
      },
    },
  ];
};

export default datasetPart;
