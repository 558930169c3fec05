/**
 * Training-dataset creation for the flights view on all 3M flights (the spine),
 * beside the same point-in-time join written as a naive per-row LATERAL query over
 * the same offline tables, in the same run. Baseline SQL is written out here on
 * purpose: it is the yardstick.
 */
import { performance } from 'node:perf_hooks';
import { airportDelays, flightDelays, flights } from '../../examples/flights/definitions.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { flightsFixture } from '../flights-fixture.ts';
import { round, secondsFigure, type BenchPart } from '../harness.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

const datasetPart: BenchPart = async (ctx) => {
  await flightsFixture(ctx);
  const view = await new FeatureStore({ knex: ctx.knex }).registerView(flightDelays);
  const airportFeatures = flightDelays.features.filter((f) => f.group === 'airport_delays').map((f) => f.feature);
  const ours: number[] = [];
  const naive: number[] = [];
  let rows = 0;
  // Warm-up: one of each (caches, statistics).
  for (let i = -1; i < RUNS; i++) {
    let t0 = performance.now();
    const dataset = await new TrainingStore({ knex: ctx.knex }).createDataset(view, { idempotencyKey: `bench-dataset-${Date.now()}-${i}` });
    const mine = (performance.now() - t0) / 1000;
    rows = dataset.rowCounts.train + dataset.rowCounts.validation + dataset.rowCounts.test;
    await ctx.knex.raw('drop table ??', [dataset.tableName]);

    t0 = performance.now();
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
    ctx.log(`dataset run ${i + 1}/${RUNS}${i < 0 ? ' (warm-up)' : ''}`, { seconds: round(mine, 2), naiveLateral: round(baseline, 2), rows });
    if (i >= 0) {
      ours.push(mine);
      naive.push(baseline);
    }
  }
  return [
    secondsFigure('training_dataset', ours, { what: 'the same join as a naive per-row LATERAL query', samples: naive }, {
      rows,
      details: { includes: 'point-in-time join, splits, shuffled materialization, train-split statistics' },
    }),
  ];
};

export default datasetPart;
