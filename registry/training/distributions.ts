/**
 * Each feature's distribution in a training dataset's train and test splits, on
 * shared bins, for the model report: numbers over 20 equal-width bins of their range
 * across both splits (integers of a narrower range: one bin per value), text and
 * booleans over the train split's 12 most frequent values (the rest together), missing
 * values counted apart. Counted in Postgres, where the rows are, in three scans however
 * many features; a train split above TRAIN_SAMPLE_ABOVE rows is sampled by its shuffle
 * key (an eighth), as its statistics are at build time.
 */
import type { Knex } from 'knex';
import type { FeatureViewDefinition, ViewFeature } from '../../features/views.ts';
import { id, join, raw, sql, transaction, type Sql } from '../db/index.ts';
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
  // Three scans of the rows however many features: the numbers' ranges, the categories'
  // most frequent values, then every feature's counts at once.
  const features = view.features.map((f) => ({ feature: f, numeric: f.type !== 'string' && f.type !== 'bool' }));
  if (features.length === 0) return [];
  const ranges = await numericRanges(knex, rowsOf, features.filter((f) => f.numeric).map((f) => f.feature));
  const tops = await topValues(knex, rowsOf, features.filter((f) => !f.numeric).map((f) => f.feature));
  // Each feature's bin as an integer (hashed far faster than text): a number's bucket, a
  // category's place among the most frequent (0: the rest); -1 for a missing value.
  const binOf = features.map(({ feature, numeric }) => {
    if (!numeric) {
      const v = sql`(${id(feature.name)})::text`;
      return sql`case when ${v} is null then -1 else coalesce(array_position(${tops.get(feature.name) ?? []}::text[], ${v}), 0) end`;
    }
    const v = sql`(${id(feature.name)})::double precision`;
    const r = ranges.get(feature.name);
    // No range: the feature has no value at all.
    if (!r) return sql`-1`;
    return sql`case when ${v} is null then -1 else least(width_bucket(${v}, ${r.lo}::double precision, ${r.hi}::double precision, ${r.n}::int), ${r.n}::int) end`;
  });
  const bin = (i: number) => id(`b${i}`);
  // A grouping set per feature, all counted in one pass: a row of the result holds one set's bin, the others null.
  // The sets are hashed side by side when work_mem holds the planner's estimate of their groups; below it, all but
  // one are sorted and spilled to disk (9 s for the 16 features of the flights view, against 3 s).
  const { rows: grouped } = (await transaction(knex, async (trx) => {
    await trx.raw(`select set_config('work_mem', '64MB', true)`);
    return raw(
      trx,
      sql`select _split as split, ${join(binOf.map((_, i) => bin(i)), ', ')}, count(*)::bigint as n
          from (select _split, ${join(binOf.map((b, i) => sql`${b} as ${bin(i)}`), ', ')} from (${rowsOf}) d) b
          group by grouping sets (${join(binOf.map((_, i) => sql`(_split, ${bin(i)})`), ', ')})`,
    );
  })) as { rows: Array<Record<string, number | string | null> & { split: 'train' | 'test'; n: string }> };
  const rows = grouped.map((r) => {
    const feature = binOf.findIndex((_, i) => r[`b${i}`] !== null);
    const b = r[`b${feature}`] as number;
    return { split: r.split, feature, bin: b < 0 ? null : b, n: r.n };
  });
  return features.map(({ feature, numeric }, i) => {
    const own = rows.filter((r) => r.feature === i);
    const top = tops.get(feature.name) ?? [];
    const counted = numeric
      ? numericCounts(own, ranges.get(feature.name))
      : categoryCounts(own.map((r) => ({ ...r, bin: r.bin === null ? null : r.bin === 0 ? OTHER : (top[r.bin - 1] as string) })));
    return { feature: feature.name, kind: numeric ? 'numeric' : 'categorical', trainSampled, ...counted };
  });
}

interface Counted {
  bins: DistributionBin[];
  rows: { train: number; test: number };
  missing: { train: number; test: number };
}

type CountRow<Bin = string> = { split: 'train' | 'test'; bin: Bin | null; n: string };

/** A numeric feature's bins: [lo, hi) cut into n (hi is the last bin's upper edge, included). */
interface NumericRange {
  lo: number;
  hi: number;
  n: number;
}

/** Each numeric feature's range over both splits, and its bins; none for a feature with no value. */
async function numericRanges(knex: Knex, rowsOf: Sql, features: readonly ViewFeature[]): Promise<Map<string, NumericRange>> {
  const out = new Map<string, NumericRange>();
  if (features.length === 0) return out;
  const { rows } = (await raw(
    knex,
    sql`select ${join(
      features.map((f, i) => sql`min((${id(f.name)})::double precision) as ${id(`lo${i}`)}, max((${id(f.name)})::double precision) as ${id(`hi${i}`)}`),
      ', ',
    )} from (${rowsOf}) d`,
  )) as { rows: Array<Record<string, number | null>> };
  features.forEach((f, i) => {
    const lo = rows[0]?.[`lo${i}`] ?? null;
    const hi = rows[0]?.[`hi${i}`] ?? null;
    if (lo === null || hi === null) return;
    // Integers of a narrow range (an hour, a weekday) get one bin per value: [k, k + 1).
    if (f.type === 'int' && hi - lo < NUMERIC_BINS) out.set(f.name, { lo, hi: hi + 1, n: hi - lo + 1 });
    else out.set(f.name, { lo, hi: hi > lo ? hi : lo + 1, n: NUMERIC_BINS });
  });
  return out;
}

/** Each categorical feature's TOP_VALUES most frequent values in the train split (ties by value). */
async function topValues(knex: Knex, rowsOf: Sql, features: readonly ViewFeature[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>(features.map((f) => [f.name, []]));
  if (features.length === 0) return out;
  const { rows } = (await raw(
    knex,
    sql`select feature, v from (
          select u.feature, u.v, row_number() over (partition by u.feature order by count(*) desc, u.v) as rank
          from (${rowsOf}) d, lateral (values ${join(features.map((f, i) => sql`(${i}::int, (${id(f.name)})::text)`), ', ')}) u(feature, v)
          where d._split = 'train' and u.v is not null group by 1, 2) t
        where rank <= ${TOP_VALUES}::int`,
  )) as { rows: Array<{ feature: number; v: string }> };
  for (const r of rows) out.get((features[r.feature] as ViewFeature).name)?.push(r.v);
  return out;
}

function numericCounts(rows: ReadonlyArray<CountRow<number>>, range: NumericRange | undefined): Counted {
  const bins: DistributionBin[] = [];
  if (range) {
    const { lo, hi, n } = range;
    const width = (hi - lo) / n;
    for (let k = 0; k < n; k++) {
      const a = lo + k * width;
      const b = lo + (k + 1) * width;
      bins.push({ label: width === 1 && Number.isInteger(a) ? String(a) : `${formatEdge(a)} – ${formatEdge(b)}`, lo: a, hi: b, train: 0, test: 0 });
    }
  }
  return tally(rows, (bin) => bins[bin - 1], bins);
}

function categoryCounts(rows: readonly CountRow[]): Counted {
  const bins = new Map<string, DistributionBin>();
  const order = (label: string) => {
    let bin = bins.get(label);
    if (!bin) bins.set(label, (bin = { label, train: 0, test: 0 }));
    return bin;
  };
  const counted = tally(rows, order, []);
  // Most frequent in train first, the rest together last.
  const sorted = [...bins.values()].sort((a, b) => (a.label === OTHER ? 1 : b.label === OTHER ? -1 : b.train - a.train || a.label.localeCompare(b.label)));
  return { ...counted, bins: sorted };
}

function tally<Bin>(rows: ReadonlyArray<CountRow<Bin>>, binOf: (bin: Bin) => DistributionBin | undefined, bins: DistributionBin[]): Counted {
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
