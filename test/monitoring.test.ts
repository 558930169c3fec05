/**
 * Drift monitoring: a month of payments trains a model version; later months are
 * compared with its training data, feature by feature (PSI, and KS for numbers),
 * through the monitoringPipeline workflow and `fti monitor`. A month drawn like the
 * training data raises nothing; a month with one feature shifted raises an alert for
 * exactly that feature.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DriftReport } from '../activities/monitoring.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { defineFeatureView, type FeatureViewDefinition } from '../features/views.ts';
import { loadBackend } from '../ml/backend.ts';
import { id, raw, sql } from '../registry/db/index.ts';
import { measureDrift, populationStability } from '../registry/monitoring/index.ts';
import { featurePipeline, monitoringPipeline } from '../workflows/index.ts';
import { runFti, runFtiJson } from './helpers/cli.ts';
import { scratchFiles } from './helpers/files.ts';
import { registerModelVersion } from './helpers/models.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const { dir, ndjson } = scratchFiles('monitoring');

const payments = defineFeatureGroup({
  name: 'payments',
  version: 1,
  entityKeys: ['payment_id'],
  eventTime: 'at',
  features: { payment_id: 'int', at: 'timestamp', amount: 'float', channel: 'string', hour: 'int', fraud: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'fraud',
});
const view = defineFeatureView({
  name: 'payment_checks',
  version: 1,
  spine: payments,
  label: 'fraud',
  features: ['payments.amount', 'payments.channel', 'payments.hour'],
  drift: { psi: 0.25, ks: 0.15, features: { hour: { psi: 0.3 } } },
});
const project = defineProject({ featureGroups: [payments], featureViews: [view] });

/** A month of payments: amounts around `mean`, channels and hours drawn the same way every month (seeded). */
function month(m: number, { mean = 50, firstId }: { mean?: number; firstId: number }): object[] {
  let seed = m * 7919 + 17;
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed / 2_147_483_648;
  };
  return Array.from({ length: 3000 }, (_, i) => {
    const normal = Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());
    const hour = Math.floor(random() * 24);
    const u = random();
    const at = new Date(Date.UTC(2024, m - 1, 1 + Math.floor(random() * 28), hour, Math.floor(random() * 60)));
    return { payment_id: firstId + i, at: at.toISOString(), amount: Math.round((mean + 10 * normal) * 100) / 100, channel: u < 0.6 ? 'web' : u < 0.9 ? 'app' : 'pos', hour, fraud: random() < 0.1 };
  });
}
const monthStart = (m: number) => new Date(Date.UTC(2024, m - 1, 1)).toISOString();

describe('drift monitoring', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;

  const commit = (rows: object[]) =>
    temporal.client.workflow.execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('fp'), args: [{ featureGroup: 'payments', source: { kind: 'ndjson', path: ndjson(`${uniqueId('p')}.ndjson`, rows) } }] });
  const drift = (m: number) =>
    temporal.client.workflow.execute(monitoringPipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('drift'), args: [{ model: 'payments_model', ref: 1, start: monthStart(m), end: monthStart(m + 1) }] });

  beforeAll(async () => {
    db = await createTestDb('monitoring');
    temporal = await createTestTemporal('monitoring');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [dir] });
    await commit(month(1, { firstId: 0 }));
    const backend = await loadBackend('cpu', 'wasm');
    await registerModelVersion(db.knex, backend.tf, { model: 'payments_model', view, start: monthStart(1), end: monthStart(2), seed: 1, epochs: 0 });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('a month drawn like the training data raises no alert', async () => {
    await commit(month(2, { firstId: 10_000 }));
    const report = await drift(2);
    expect(report).toMatchObject({ model: 'payments_model', modelVersion: 1, featureView: { name: 'payment_checks', version: 1 }, windowRows: 3000, alerts: [] });
    // The train split (80% of January) against February.
    expect(report.trainRows).toBeGreaterThan(2000);
    expect(report.features.map((f) => [f.feature, f.kind])).toEqual([
      ['amount', 'numeric'],
      ['channel', 'categorical'],
      ['hour', 'numeric'],
    ]);
    for (const f of report.features) {
      expect(f.psi).toBeLessThan(0.05);
      if (f.kind === 'numeric') expect(f.ks).toBeLessThan(0.05);
    }
    // The view's thresholds: its own, and hour's override.
    expect(report.features.map((f) => [f.psiThreshold, f.ksThreshold])).toEqual([
      [0.25, 0.15],
      [0.25, null],
      [0.3, 0.15],
    ]);
  });

  it('a month with amounts shifted raises an alert for amount alone, in the workflow and `fti monitor`', async () => {
    await commit(month(3, { mean: 65, firstId: 20_000 }));
    const report = await drift(3);
    expect(report.alerts).toEqual(['amount']);
    const amount = report.features.find((f) => f.feature === 'amount');
    expect(amount?.psi).toBeGreaterThan(0.25);
    expect(amount?.ks).toBeGreaterThan(0.4);

    // The CLI, as the worker role: the same verdict, and a non-zero exit for scripts.
    const cli = await runFti(['monitor', 'drift', 'payments_model@1', '--start', monthStart(3), '--end', monthStart(4), '--json'], { prefix: temporal.prefix, schema: db.schema });
    expect(cli.code, cli.stderr).toBe(3);
    const printed = JSON.parse(cli.stdout) as DriftReport;
    expect(printed.alerts).toEqual(['amount']);
    expect(printed.features.map((f) => f.psi)).toEqual(report.features.map((f) => f.psi));
    const runs = await runFtiJson<DriftReport[]>(['monitor', 'list', '--model', 'payments_model'], { prefix: temporal.prefix, schema: db.schema });
    expect(runs.map((r) => [r.windowStart, r.alerts])).toEqual([
      [monthStart(3), ['amount']],
      [monthStart(3), ['amount']],
      [monthStart(2), []],
    ]);
  });

  it('numbers are binned on the train deciles and compared by KS exactly as the SQL definitions give them: ties, nulls, NaN, -0, booleans, large integers', async () => {
    // Only the features' names and types are read.
    const features = [
      { name: 'x', type: 'float' },
      { name: 'n', type: 'int' },
      { name: 'b', type: 'bool' },
    ] as const;
    const exactView = { features } as unknown as FeatureViewDefinition;
    await db.knex.raw(`create table drift_exact as
      select case when g % 17 = 0 then null when g % 29 = 0 then 'NaN' when g % 31 = 0 then '-0' else (g % 7) * 1.5 end::double precision as x,
             (g % 5)::bigint * 9007199254740 as n, case when g % 11 = 0 then null else g % 3 = 0 end as b, 'train' as _split, g as _shuffle
      from generate_series(1, 2000) g`);
    const window = sql`select case when g % 13 = 0 then null when g % 23 = 0 then 'NaN' else (g % 9) * 1.5 end::double precision as x,
                              (g % 4)::bigint * 9007199254740 as n, g % 2 = 0 as b from generate_series(1, 700) g`;
    const measured = await db.knex.transaction((trx) => measureDrift(trx, { view: exactView, datasetTable: 'drift_exact', trainRows: 2000, window, thresholds: { psi: 0.2, ks: 0.1 } }));
    // The reference: each statistic as one SQL statement over the same rows.
    await db.knex.transaction(async (trx) => {
      await raw(trx, sql`create temp table ref_train on commit drop as select x, n, b from drift_exact`);
      await raw(trx, sql`create temp table ref_window on commit drop as ${window}`);
      for (const f of features) {
        const v = f.type === 'bool' ? sql`(${id(f.name)})::int::double precision` : sql`(${id(f.name)})::double precision`;
        const bins = (await raw(
          trx,
          sql`with edges as (select coalesce(array(select distinct x from unnest(percentile_disc(${[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]}::double precision[]) within group (order by ${v})) x where x is not null order by 1), '{}') as e from ref_train),
                  tagged as (select 'train' as side, ${v} as v from ref_train union all select 'window', ${v} from ref_window)
              select side, case when v is null then null else width_bucket(v, edges.e)::text end as bin, count(*)::int as n from tagged, edges group by 1, 2`,
        )) as { rows: Array<{ side: 'train' | 'window'; bin: string | null; n: number }> };
        const byBin = new Map<string | null, { bin: string | null; train: number; window: number }>();
        for (const r of bins.rows) {
          const b = byBin.get(r.bin) ?? { bin: r.bin, train: 0, window: 0 };
          b[r.side] += r.n;
          byBin.set(r.bin, b);
        }
        const ks = (await raw(
          trx,
          sql`with tagged as (select ${v} as v, 1 as t, 0 as w from ref_train where ${id(f.name)} is not null union all select ${v}, 0, 1 from ref_window where ${id(f.name)} is not null),
                   totals as (select sum(t)::double precision as nt, sum(w)::double precision as nw from tagged)
              select max(abs(ct / totals.nt - cw / totals.nw)) as d
              from (select sum(t) over o as ct, sum(w) over o as cw from tagged window o as (order by v range between unbounded preceding and current row)) c, totals`,
        )) as { rows: Array<{ d: number }> };
        const got = measured.features.find((m) => m.feature === f.name);
        expect(byBin.size, f.name).toBeGreaterThan(2);
        expect(got?.psi, f.name).toBeCloseTo(populationStability([...byBin.values()]), 12);
        expect(got?.ks, f.name).toBe(ks.rows[0]?.d);
        expect(got?.ks, f.name).toBeGreaterThan(0);
      }
    });
  });

  it('PSI is zero for equal shares and grows with the shift', () => {
    expect(populationStability([{ bin: '1', train: 50, window: 500 }, { bin: '2', train: 50, window: 500 }])).toBe(0);
    const small = populationStability([{ bin: '1', train: 50, window: 55 }, { bin: '2', train: 50, window: 45 }]);
    const large = populationStability([{ bin: '1', train: 50, window: 80 }, { bin: '2', train: 50, window: 20 }]);
    expect(small).toBeGreaterThan(0);
    expect(large).toBeGreaterThan(small * 10);
  });
});
