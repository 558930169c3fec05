/**
 * Each feature's distribution in a training dataset's train and test splits, on
 * shared bins, for the model report: numbers over 20 equal-width bins of their
 * range across both splits (integers of a narrower range: one bin per value), text and booleans over the train split's 12 most
 * frequent values (the rest together), missing values counted apart. Counted in
 * Postgres, where the rows are; a train split above TRAIN_SAMPLE_ABOVE rows is
 * sampled by its shuffle key (an eighth), as its statistics are at build time.
 */
import type { Knex } from 'knex';
import type { FeatureViewDefinition, ViewFeature } from '../../features/views.ts';
import { id, raw, sql, type Sql } from '../db/index.ts';
import type { TrainingDataset } from './datasets.ts';

export interface DistributionBin {
  /** The value (categorical), or the bin's range as text (numeric). */
  label: string;
  /** Numeric bins: [lo, hi); the last one includes hi. */
  lo?: number;
  hi?: number;
  train: number;
  test: number;
}

export interface FeatureDistribution {
  feature: string;
  kind: 'numeric' | 'categorical';
  bins: DistributionBin[];
  /** Rows counted in each split (the train split may be a sample), and how many of them were missing. */
  rows: { train: number; test: number };
  missing: { train: number; test: number };
  /** True when the train split was sampled (an eighth of its rows). */
  trainSampled: boolean;
}

const NUMERIC_BINS = 20;
const TOP_VALUES = 12;
const TRAIN_SAMPLE_ABOVE = 400_000;
const OTHER = '(other)';

export async function splitDistributions(knex: Knex, dataset: TrainingDataset, view: FeatureViewDefinition): Promise<FeatureDistribution[]> {
  const trainSampled = dataset.rowCounts.train > TRAIN_SAMPLE_ABOVE;
  const rowsOf = sql`select * from ${id(dataset.tableName)} where (_split = 'test' or (_split = 'train'${trainSampled ? sql` and (_shuffle & 7) = 0` : sql``}))`;
  const out: FeatureDistribution[] = [];
  for (const f of view.features) {
    const numeric = f.type !== 'string' && f.type !== 'bool';
    const counted = numeric ? await numericCounts(knex, rowsOf, f) : await categoryCounts(knex, rowsOf, f);
    out.push({ feature: f.name, kind: numeric ? 'numeric' : 'categorical', trainSampled, ...counted });
  }
  return out;
}

interface Counted {
  bins: DistributionBin[];
  rows: { train: number; test: number };
  missing: { train: number; test: number };
}

type CountRow = { split: 'train' | 'test'; bin: string | null; n: string; lo?: number | null; hi?: number | null };
type RangeRow = { split: 'train' | 'test'; bin: string | null; n_rows: string; lo: number | null; hi: number | null; n: number };

async function numericCounts(knex: Knex, rowsOf: Sql, f: ViewFeature): Promise<Counted> {
  const v = sql`(${id(f.name)})::double precision`;
  // Integers of a narrow range (an hour, a weekday) get one bin per value: [k, k + 1).
  const perValue = f.type === 'int' ? sql`(r.hi - r.lo < ${NUMERIC_BINS}::int)` : sql`false`;
  const result = (await raw(
    knex,
    sql`with s as (select _split, ${v} as v from (${rowsOf}) d),
             r0 as (select min(v) as lo, max(v) as hi from s),
             r as (select lo, case when ${perValue} then hi + 1 when hi > lo then hi else lo + 1 end as hi,
                          case when ${perValue} then (hi - lo + 1)::int else ${NUMERIC_BINS}::int end as n from r0 r)
        select _split as split, r.lo, r.hi, r.n,
               case when v is null then null else least(width_bucket(v, r.lo, r.hi, r.n), r.n)::text end as bin,
               count(*)::bigint as n_rows
        from s, r group by 1, 2, 3, 4, 5`,
  )) as { rows: RangeRow[] };
  const first = result.rows[0];
  const lo = first?.lo ?? null;
  const hi = first?.hi ?? null;
  const count = first?.n ?? 0;
  const bins: DistributionBin[] = [];
  if (lo !== null && hi !== null) {
    const width = (hi - lo) / count;
    for (let k = 0; k < count; k++) {
      const a = lo + k * width;
      const b = lo + (k + 1) * width;
      bins.push({ label: width === 1 && Number.isInteger(a) ? String(a) : `${formatEdge(a)} – ${formatEdge(b)}`, lo: a, hi: b, train: 0, test: 0 });
    }
  }
  return tally(
    result.rows.map((r) => ({ ...r, n: r.n_rows })),
    (bin) => bins[Number(bin) - 1],
    bins,
  );
}

async function categoryCounts(knex: Knex, rowsOf: Sql, f: ViewFeature): Promise<Counted> {
  const c = sql`(${id(f.name)})::text`;
  const result = (await raw(
    knex,
    sql`with s as (select _split, ${c} as v from (${rowsOf}) d),
             top as (select v from s where _split = 'train' and v is not null group by v order by count(*) desc, v limit ${TOP_VALUES}::int)
        select _split as split, case when v is null then null when v in (select v from top) then v else ${OTHER} end as bin, count(*)::bigint as n
        from s group by 1, 2 order by 2`,
  )) as { rows: CountRow[] };
  const bins = new Map<string, DistributionBin>();
  const order = (label: string) => {
    let bin = bins.get(label);
    if (!bin) bins.set(label, (bin = { label, train: 0, test: 0 }));
    return bin;
  };
  const counted = tally(result.rows, order, []);
  // Most frequent in train first, the rest together last.
  const sorted = [...bins.values()].sort((a, b) => (a.label === OTHER ? 1 : b.label === OTHER ? -1 : b.train - a.train || a.label.localeCompare(b.label)));
  return { ...counted, bins: sorted };
}

function tally(rows: readonly CountRow[], binOf: (bin: string) => DistributionBin | undefined, bins: DistributionBin[]): Counted {
  const total = { train: 0, test: 0 };
  const missing = { train: 0, test: 0 };
  for (const row of rows) {
    const n = Number(row.n);
    total[row.split] += n;
    if (row.bin === null) {
      missing[row.split] += n;
      continue;
    }
    const bin = binOf(row.bin);
    if (bin) bin[row.split] += n;
  }
  return { bins, rows: total, missing };
}

function formatEdge(x: number): string {
  return Math.abs(x) >= 1000 || Number.isInteger(x) ? String(Math.round(x)) : x.toPrecision(3);
}
