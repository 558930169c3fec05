/**
 * Per-commit statistics of every feature, computed in SQL over the commit's rows:
 * count, nulls, mean, std, min, max and a 10-bin histogram for numbers, booleans
 * and times; count, nulls, distinct count and the most frequent values for text.
 */
import type { Knex } from 'knex';
import type { FeatureType } from '../../features/schema.ts';
import { id, int, join, raw, sql, type Sql } from '../db/index.ts';

export interface FeatureStatistics {
  feature: string;
  type: FeatureType;
  count: number;
  nulls: number;
  mean: number | null;
  std: number | null;
  min: number | null;
  max: number | null;
  distinctCount: number | null;
  /** Numeric: equal-width bins [{ lo, hi, count }]; text: the top values [{ value, count }]. */
  histogram: Array<{ lo: number; hi: number; count: number }> | Array<{ value: string; count: number }> | null;
}

const BINS = 10;
/** Histogram bucket numbers packed per key: BINS buckets, width_bucket's 0 and BINS + 1 folded in, and null. */
const BASE = 12;
const NULL_BUCKET = BASE - 1;
/** Columns per packed key: at most 12^5 (249k) groups a key. */
const PACK = 5;

/**
 * A numeric view of a column: numbers as is, booleans as 0/1, times as epoch seconds.
 * Times go through date_part, which gives a double (the same value as extract's
 * numeric cast to one, to the microsecond): extract gives numeric, and averages and
 * buckets of millions of numerics took longer than all the other columns together.
 */
function numeric(column: string, type: FeatureType): Sql {
  if (type === 'bool') return sql`(${id(column)})::int`;
  if (type === 'timestamp') return sql`date_part('epoch', ${id(column)})`;
  return sql`(${id(column)})::double precision`;
}

export async function computeStatistics(knex: Knex, table: string, columns: Array<{ name: string; type: FeatureType }>): Promise<FeatureStatistics[]> {
  const numericColumns = columns.filter((c) => c.type !== 'string');
  const textColumns = columns.filter((c) => c.type === 'string');
  const out: FeatureStatistics[] = [];

  const totalRow = numericColumns.length ? undefined : ((await raw(knex, sql`select count(*)::bigint as n from ${id(table)}`)) as { rows: Array<{ n: number }> }).rows[0];
  let total = totalRow?.n ?? 0;

  if (numericColumns.length) {
    const parts = numericColumns.flatMap((c, i) => {
      const x = numeric(c.name, c.type);
      return [
        sql`count(${id(c.name)})::bigint as ${id(`c${i}`)}`,
        sql`avg(${x})::double precision as ${id(`a${i}`)}`,
        sql`stddev_samp(${x})::double precision as ${id(`s${i}`)}`,
        sql`min(${x})::double precision as ${id(`l${i}`)}`,
        sql`max(${x})::double precision as ${id(`h${i}`)}`,
      ];
    });
    const summary = ((await raw(knex, sql`select count(*)::bigint as _total, ${join(parts, ', ')} from ${id(table)}`)) as { rows: Array<Record<string, number | null>> }).rows[0] ?? {};
    total = Number(summary._total ?? 0);
    const ranges = numericColumns.map((c, i) => ({ column: c, lo: summary[`l${i}`] ?? null, hi: summary[`h${i}`] ?? null }));
    // All histograms in one statement: the columns' bucket numbers, PACK at a time, packed
    // into one key (base 12: width_bucket's 0–11 folded to 1–10, 11 for null),
    // one plain GROUP BY per pack, side by side in a UNION ALL. Plain aggregates run in
    // parallel where grouping sets cannot, a key has at most 12^PACK values, and hashing
    // a row once per pack instead of once per column took the 8.5M rows of a
    // 13-column commit from 19 s to 8 s (2 cores).
    const binned = ranges.map((r, i) => ({ ...r, i })).filter((r) => r.lo !== null && r.hi !== null);
    const histograms = new Map<number, number[]>();
    const packs = Array.from({ length: Math.ceil(binned.length / PACK) }, (_, p) => binned.slice(p * PACK, (p + 1) * PACK));
    if (packs.length) {
      // A case, not coalesce: least() skips nulls, which put every null in the last bin until 2026-12-01.
      const bucket = (r: (typeof binned)[number]) => {
        const x = numeric(r.column.name, r.column.type);
        return sql`case when ${x} is null then ${int(NULL_BUCKET)} else least(width_bucket(${x}, ${r.lo}::double precision, ${(r.hi as number) > (r.lo as number) ? r.hi : (r.lo as number) + 1}::double precision, ${BINS}), ${BINS}) end`;
      };
      const branches = packs.map(
        (pack, p) => sql`select ${int(p)} as pack, k, count(*)::bigint as n
                         from (select ${join(pack.map((r, m) => sql`${int(BASE ** m)} * ${bucket(r)}`), ' + ')} as k from ${id(table)}) x group by k`,
      );
      const result = (await raw(knex, join(branches, ' union all '))) as { rows: Array<{ pack: number; k: number; n: number }> };
      for (const row of result.rows) {
        let key = row.k;
        for (const r of packs[row.pack] ?? []) {
          const b = key % BASE;
          key = (key - b) / BASE;
          if (b === NULL_BUCKET) continue;
          const counts = histograms.get(r.i) ?? new Array<number>(BINS).fill(0);
          const at = Math.max(1, b) - 1;
          counts[at] = (counts[at] ?? 0) + Number(row.n);
          histograms.set(r.i, counts);
        }
      }
    }
    ranges.forEach(({ column, lo, hi }, i) => {
      const count = Number(summary[`c${i}`] ?? 0);
      const counts = histograms.get(i) ?? (lo !== null ? new Array<number>(BINS).fill(0) : undefined);
      const width = lo !== null && hi !== null && hi > lo ? (hi - lo) / BINS : 1;
      out.push({
        feature: column.name,
        type: column.type,
        count,
        nulls: total - count,
        mean: summary[`a${i}`] ?? null,
        std: summary[`s${i}`] ?? null,
        min: lo,
        max: hi,
        distinctCount: null,
        histogram: counts && lo !== null ? counts.map((n, k) => ({ lo: lo + k * width, hi: lo + (k + 1) * width, count: Number(n) })) : null,
      });
    });
  }

  for (const c of textColumns) {
    // One scan: the value counts, how many values there are, and how many rows have one.
    const result = (await raw(
      knex,
      sql`select value, n, count(*) over ()::bigint as distinct_count, (sum(n) over ())::bigint as non_null
          from (select ${id(c.name)} as value, count(*)::bigint as n from ${id(table)} where ${id(c.name)} is not null group by 1) g
          order by n desc, value limit 10`,
    )) as { rows: Array<{ value: string; n: number; distinct_count: number; non_null: number }> };
    const nonNull = result.rows[0]?.non_null ?? 0;
    out.push({
      feature: c.name,
      type: c.type,
      count: nonNull,
      nulls: total - nonNull,
      mean: null,
      std: null,
      min: null,
      max: null,
      distinctCount: result.rows[0]?.distinct_count ?? 0,
      histogram: result.rows.map((r) => ({ value: r.value, count: r.n })),
    });
  }
  return out;
}

export async function storeStatistics(knex: Knex, commitId: number, stats: FeatureStatistics[]): Promise<void> {
  if (stats.length === 0) return;
  await knex('feature_statistics')
    .insert(
      stats.map((s) => ({
        commit_id: commitId,
        feature: s.feature,
        type: s.type,
        count: s.count,
        nulls: s.nulls,
        mean: s.mean,
        std: s.std,
        min: s.min,
        max: s.max,
        distinct_count: s.distinctCount,
        histogram: s.histogram ? JSON.stringify(s.histogram) : null,
      })),
    )
    .onConflict(['commit_id', 'feature'])
    .merge();
}

export async function getStatistics(knex: Knex, commitId: number): Promise<FeatureStatistics[]> {
  const rows = await knex('feature_statistics').where({ commit_id: commitId }).orderBy('feature');
  return rows.map((r: Record<string, unknown>) => ({
    feature: r.feature as string,
    type: r.type as FeatureType,
    count: Number(r.count),
    nulls: Number(r.nulls),
    mean: r.mean as number | null,
    std: r.std as number | null,
    min: r.min as number | null,
    max: r.max as number | null,
    distinctCount: r.distinct_count === null ? null : Number(r.distinct_count),
    histogram: r.histogram as FeatureStatistics['histogram'],
  }));
}

