/**
 * Statistics that fitSignature turns into encodings. In production the caller
 * computes them in SQL over the training split (count / avg / stddev_pop, and
 * categories by frequency); this streaming version serves tests, small data and
 * anything that already holds an iterator of rows. Numerics use Welford's update,
 * which stays accurate where the naive sum-of-squares formula cancels.
 */
import type { FeatureSpec } from './feature-spec.ts';
import { readCategory, readNumber, type FeatureRow } from './values.ts';

/** Over the non-null values of a numeric feature. `std` is the population standard deviation. */
export interface NumericStats {
  count: number;
  mean: number;
  std: number;
}

/** Every category seen, most frequent first (ties by name); fitSignature keeps the first `maxCategories`. */
export interface CategoricalStats {
  categories: string[];
}

/**
 * Quantiles of a numeric feature's non-null values at 0, 1/bins, …, 1 (each one of the
 * values: nearest rank, as Postgres' percentile_disc); empty when all are null.
 */
export interface QuantileStats {
  /** The non-null values the quantiles were taken from (a large train split is sampled). */
  count: number;
  quantiles: number[];
}

export type FeatureStats = NumericStats | CategoricalStats | QuantileStats;

/** The values at ranks ceil(q·n) (1-based, at least 1) of sorted `values`, for q = 0, 1/bins, …, 1: percentile_disc. */
export function quantilesOf(sorted: readonly number[], bins: number): number[] {
  if (sorted.length === 0) return [];
  return Array.from({ length: bins + 1 }, (_, i) => sorted[Math.max(1, Math.ceil((i / bins) * sorted.length)) - 1] as number);
}

export interface StatsAccumulator {
  add(row: FeatureRow): void;
  result(): Record<string, FeatureStats>;
}

/** One pass, constant memory per numeric feature, one counter per distinct category. */
export function createStatsAccumulator(inputs: readonly FeatureSpec[]): StatsAccumulator {
  const numeric = inputs
    .filter((i) => i.encoding === 'standardize')
    .map((i) => ({ name: i.name, dtype: i.dtype, count: 0, mean: 0, m2: 0 }));
  // Quantiles need every value: this accumulator is for small data (production computes them in SQL).
  const binned = inputs.flatMap((i) => (i.encoding === 'bins' ? [{ name: i.name, dtype: i.dtype, bins: i.bins ?? 16, values: [] as number[] }] : []));
  const categorical = inputs.filter((i) => i.encoding === 'one_hot').map((i) => ({ name: i.name, dtype: i.dtype, counts: new Map<string, number>() }));
  return {
    add(row) {
      for (const s of numeric) {
        const x = readNumber(s.name, s.dtype, row[s.name]);
        if (x === null) continue;
        s.count += 1;
        const delta = x - s.mean;
        s.mean += delta / s.count;
        s.m2 += delta * (x - s.mean);
      }
      for (const s of binned) {
        const x = readNumber(s.name, s.dtype, row[s.name]);
        if (x !== null) s.values.push(x);
      }
      for (const s of categorical) {
        const key = readCategory(s.name, s.dtype, row[s.name]);
        if (key !== null) s.counts.set(key, (s.counts.get(key) ?? 0) + 1);
      }
    },
    result() {
      const out: Record<string, FeatureStats> = {};
      for (const s of numeric) out[s.name] = { count: s.count, mean: s.mean, std: s.count > 0 ? Math.sqrt(s.m2 / s.count) : 0 };
      for (const s of binned) out[s.name] = { count: s.values.length, quantiles: quantilesOf([...s.values].sort((a, b) => a - b), s.bins) };
      for (const s of categorical) {
        const categories = [...s.counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([key]) => key);
        out[s.name] = { categories };
      }
      return out;
    },
  };
}

export function computeStats(rows: Iterable<FeatureRow>, inputs: readonly FeatureSpec[]): Record<string, FeatureStats> {
  const acc = createStatsAccumulator(inputs);
  for (const row of rows) acc.add(row);
  return acc.result();
}

/**
 * Count, mean and population standard deviation of the union of parts, from each
 * part's (Chan, Golub and LeVeque's pairwise update), folded in the parts' order.
 */
export function combineMoments(parts: readonly NumericStats[]): NumericStats {
  const nonEmpty = parts.filter((p) => p.count > 0);
  // One part: its own figures, exactly (std² × n, then its square root again, may not be).
  if (nonEmpty.length <= 1) return nonEmpty[0] ?? { count: 0, mean: 0, std: 0 };
  let count = 0;
  let mean = 0;
  let m2 = 0;
  for (const p of nonEmpty) {
    const n = count + p.count;
    const delta = p.mean - mean;
    mean += (delta * p.count) / n;
    m2 += p.std * p.std * p.count + (delta * delta * count * p.count) / n;
    count = n;
  }
  return { count, mean, std: count === 0 ? 0 : Math.sqrt(m2 / count) };
}
