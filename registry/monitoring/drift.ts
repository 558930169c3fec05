/**
 * Feature drift: each feature of a view, in a window's rows, against the train split
 * of the training dataset a model version learnt from.
 *
 *   - PSI (population stability index) for every feature: numbers over the train
 *     split's deciles, text over its 20 most frequent values (the rest together), and
 *     missing values as a bin of their own; shares below 1e-4 count as 1e-4.
 *   - KS for numbers: the two-sample Kolmogorov–Smirnov statistic, the largest gap
 *     between the two empirical distribution functions (missing values left out).
 *
 * Both are computed in Postgres, where the rows are: a statistics library would need
 * every row shipped to Node first. A train split above TRAIN_SAMPLE_ABOVE rows is
 * sampled by its shuffle key (an eighth), as its quantiles are at build time.
 */
import type { Knex } from 'knex';
import type { DriftThresholds, FeatureViewDefinition, ViewFeature } from '../../features/views.ts';
import { id, ids, raw, sql, type Sql } from '../db/index.ts';

export interface FeatureDrift {
  feature: string;
  kind: 'numeric' | 'categorical';
  psi: number;
  /** Numbers only. */
  ks: number | null;
  psiThreshold: number;
  ksThreshold: number | null;
  /** PSI or KS above its threshold. */
  alert: boolean;
  trainCount: number;
  windowCount: number;
  trainNullShare: number;
  windowNullShare: number;
}

const TRAIN_SAMPLE_ABOVE = 400_000;
const TOP_CATEGORIES = 20;
const MIN_SHARE = 1e-4;
/** The bin of the values outside the train split's most frequent ones. */
const OTHER = '(other)';

/** Temp tables of the caller's transaction: the train sample and the window's rows, features only. */
const TRAIN = '_fti_drift_train';
const WINDOW = '_fti_drift_window';

export async function measureDrift(
  trx: Knex.Transaction,
  input: { view: FeatureViewDefinition; datasetTable: string; trainRows: number; window: Sql; thresholds: DriftThresholds },
): Promise<{ features: FeatureDrift[]; trainRows: number; windowRows: number }> {
  const names = input.view.features.map((f) => f.name);
  const sample = input.trainRows > TRAIN_SAMPLE_ABOVE ? sql` and (_shuffle & 7) = 0` : sql``;
  await raw(trx, sql`create temp table ${id(TRAIN)} on commit drop as select ${ids(names)} from ${id(input.datasetTable)} where _split = 'train'${sample}`);
  await raw(trx, sql`create temp table ${id(WINDOW)} on commit drop as select ${ids(names)} from (${input.window}) w`);
  const count = async (table: string) => Number(((await raw(trx, sql`select count(*)::bigint as n from ${id(table)}`)) as { rows: Array<{ n: string }> }).rows[0]?.n ?? 0);
  const trainRows = await count(TRAIN);
  const windowRows = await count(WINDOW);
  const features: FeatureDrift[] = [];
  for (const f of input.view.features) {
    const own = input.thresholds.features?.[f.name];
    const psiThreshold = own?.psi ?? input.thresholds.psi;
    const numeric = f.type !== 'string';
    const ksThreshold = numeric ? (own?.ks ?? input.thresholds.ks) : null;
    const bins = numeric ? await numericBins(trx, f) : await categoryBins(trx, f);
    const ks = numeric && trainRows > 0 && windowRows > 0 ? await ksStatistic(trx, f) : null;
    const psi = populationStability(bins);
    const nullShare = (side: 'train' | 'window', total: number) => (total === 0 ? 0 : (bins.find((b) => b.bin === null)?.[side] ?? 0) / total);
    features.push({
      feature: f.name,
      kind: numeric ? 'numeric' : 'categorical',
      psi,
      ks,
      psiThreshold,
      ksThreshold,
      alert: psi > psiThreshold || (ks !== null && ksThreshold !== null && ks > ksThreshold),
      trainCount: trainRows,
      windowCount: windowRows,
      trainNullShare: nullShare('train', trainRows),
      windowNullShare: nullShare('window', windowRows),
    });
  }
  return { features, trainRows, windowRows };
}

interface Bin {
  /** null: the missing values. */
  bin: string | null;
  train: number;
  window: number;
}

/** PSI = Σ (w − t) · ln(w / t) over the bins' shares. */
export function populationStability(bins: readonly Bin[]): number {
  const total = (side: 'train' | 'window') => bins.reduce((n, b) => n + b[side], 0);
  const trainTotal = total('train');
  const windowTotal = total('window');
  if (trainTotal === 0 || windowTotal === 0) return 0;
  let psi = 0;
  for (const b of bins) {
    const t = Math.max(b.train / trainTotal, MIN_SHARE);
    const w = Math.max(b.window / windowTotal, MIN_SHARE);
    psi += (w - t) * Math.log(w / t);
  }
  return psi;
}

const value = (f: ViewFeature): Sql => (f.type === 'bool' ? sql`(${id(f.name)})::int::double precision` : sql`(${id(f.name)})::double precision`);

/** Counts per bin of the train split's deciles (distinct edges: a discrete feature has fewer bins). */
async function numericBins(trx: Knex.Transaction, f: ViewFeature): Promise<Bin[]> {
  const v = value(f);
  const fractions = Array.from({ length: 9 }, (_, i) => (i + 1) / 10);
  const result = (await raw(
    trx,
    sql`with edges as (
          select coalesce(array(select distinct x from unnest(percentile_disc(${fractions}::double precision[]) within group (order by ${v})) x where x is not null order by 1), '{}') as e
          from ${id(TRAIN)}
        ), tagged as (
          select 'train' as side, ${v} as v from ${id(TRAIN)}
          union all
          select 'window', ${v} from ${id(WINDOW)}
        )
        select side, case when v is null then null else width_bucket(v, edges.e)::text end as bin, count(*)::bigint as n
        from tagged, edges group by 1, 2`,
  )) as { rows: Array<{ side: 'train' | 'window'; bin: string | null; n: string }> };
  return collect(result.rows);
}

/** Counts per value among the train split's most frequent ones; the rest in one bin. */
async function categoryBins(trx: Knex.Transaction, f: ViewFeature): Promise<Bin[]> {
  const c = id(f.name);
  const result = (await raw(
    trx,
    sql`with top as (select ${c} as v from ${id(TRAIN)} where ${c} is not null group by 1 order by count(*) desc, 1 limit ${TOP_CATEGORIES}),
        tagged as (select 'train' as side, ${c}::text as v from ${id(TRAIN)} union all select 'window', ${c}::text from ${id(WINDOW)})
        select side, case when v is null then null when v in (select v::text from top) then v else ${OTHER} end as bin, count(*)::bigint as n
        from tagged group by 1, 2`,
  )) as { rows: Array<{ side: 'train' | 'window'; bin: string | null; n: string }> };
  return collect(result.rows);
}

function collect(rows: Array<{ side: 'train' | 'window'; bin: string | null; n: string }>): Bin[] {
  const bins = new Map<string | null, Bin>();
  for (const r of rows) {
    const b = bins.get(r.bin) ?? { bin: r.bin, train: 0, window: 0 };
    b[r.side] += Number(r.n);
    bins.set(r.bin, b);
  }
  return [...bins.values()];
}

/** The largest gap between the two empirical distribution functions (ties step together: RANGE frame). */
async function ksStatistic(trx: Knex.Transaction, f: ViewFeature): Promise<number | null> {
  const v = value(f);
  const result = (await raw(
    trx,
    sql`with tagged as (
          select ${v} as v, 1 as t, 0 as w from ${id(TRAIN)} where ${id(f.name)} is not null
          union all
          select ${v}, 0, 1 from ${id(WINDOW)} where ${id(f.name)} is not null
        ), totals as (select sum(t)::double precision as nt, sum(w)::double precision as nw from tagged)
        select max(abs(ct / totals.nt - cw / totals.nw)) as d
        from (select sum(t) over o as ct, sum(w) over o as cw from tagged window o as (order by v range between unbounded preceding and current row)) c, totals
        where totals.nt > 0 and totals.nw > 0`,
  )) as { rows: Array<{ d: number | null }> };
  const d = result.rows[0]?.d;
  return d === null || d === undefined ? null : Number(d);
}
