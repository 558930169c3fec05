/**
 * A commit's statistics (registry/feature-store/statistics.ts) against the same figures
 * computed here from the rows: counts, nulls, means, ranges and 10-bin histograms of
 * more numeric columns than one packed histogram key holds, with nulls, booleans,
 * times, a constant column and an all-null one; and the top values of text.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeatureType } from '../features/schema.ts';
import { computeStatistics, type FeatureStatistics } from '../registry/feature-store/index.ts';
import { createTestDb, type TestDb } from './helpers/services.ts';

const ROWS = 1000;
const T0 = Date.parse('2024-01-01T00:00:00Z') / 1000;

/** Row i's values; integers 0–99 never fall on a bin edge of the range 0–99 but at its ends. */
function rowOf(i: number) {
  return {
    a: i % 100,
    b: i % 10 === 0 ? null : (i * 7) % 100,
    c: i % 3 === 0,
    d: T0 + (i % 100),
    e: 5,
    f: null,
    g: (i * 13) % 100,
    h: i % 4 === 0 ? null : (i * 31) % 100,
    s: i % 5 === 0 ? null : `v${i % 4}`,
  };
}

const COLUMNS: Array<{ name: string; type: FeatureType; pg: string }> = [
  { name: 'a', type: 'int', pg: 'bigint' },
  { name: 'b', type: 'float', pg: 'double precision' },
  { name: 'c', type: 'bool', pg: 'boolean' },
  { name: 'd', type: 'timestamp', pg: 'timestamptz' },
  { name: 'e', type: 'float', pg: 'double precision' },
  { name: 'f', type: 'float', pg: 'double precision' },
  { name: 'g', type: 'int', pg: 'bigint' },
  { name: 'h', type: 'float', pg: 'double precision' },
  { name: 's', type: 'string', pg: 'text' },
];

/** What the statistics of a numeric column must be: width_bucket's bins over [min, max], the max in the last. */
function expectedNumeric(values: Array<number | null>): Pick<FeatureStatistics, 'count' | 'nulls' | 'min' | 'max' | 'mean'> & { counts: number[] | null } {
  const present = values.filter((v): v is number => v !== null);
  if (present.length === 0) return { count: 0, nulls: values.length, min: null, max: null, mean: null, counts: null };
  const lo = Math.min(...present);
  const hi = Math.max(...present);
  const top = hi > lo ? hi : lo + 1;
  const counts = new Array<number>(10).fill(0);
  for (const v of present) {
    const bin = Math.min(9, Math.floor(((v - lo) / (top - lo)) * 10));
    counts[bin] = (counts[bin] as number) + 1;
  }
  return { count: present.length, nulls: values.length - present.length, min: lo, max: hi, mean: present.reduce((a, b) => a + b, 0) / present.length, counts };
}

describe('feature statistics', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb('statistics');
    await db.knex.raw(`create table stats_rows (${COLUMNS.map((c) => `${c.name} ${c.pg}`).join(', ')})`);
    const rows = Array.from({ length: ROWS }, (_, i) => {
      const r = rowOf(i);
      return { ...r, d: new Date(r.d * 1000) };
    });
    await db.knex.batchInsert('stats_rows', rows, 500);
  });
  afterAll(async () => {
    await db?.close();
  });

  it('gives every column the figures its rows have', async () => {
    const stats = await computeStatistics(db.knex, 'stats_rows', COLUMNS);
    expect(stats.map((s) => s.feature).sort()).toEqual(COLUMNS.map((c) => c.name).sort());
    const rows = Array.from({ length: ROWS }, (_, i) => rowOf(i));
    for (const column of COLUMNS.filter((c) => c.type !== 'string')) {
      const values = rows.map((r) => {
        const v = r[column.name as keyof typeof r];
        return v === null ? null : typeof v === 'boolean' ? Number(v) : (v as number);
      });
      const want = expectedNumeric(values);
      const got = stats.find((s) => s.feature === column.name) as FeatureStatistics;
      expect({ count: got.count, nulls: got.nulls, min: got.min, max: got.max }, column.name).toEqual({ count: want.count, nulls: want.nulls, min: want.min, max: want.max });
      if (want.mean === null) expect(got.mean, column.name).toBeNull();
      else expect(got.mean, column.name).toBeCloseTo(want.mean, 6);
      const histogram = got.histogram as Array<{ lo: number; hi: number; count: number }> | null;
      expect(histogram?.map((b) => b.count) ?? null, `${column.name}: histogram`).toEqual(want.counts);
      if (histogram) expect(histogram[0]?.lo, column.name).toBe(want.min);
    }
    // Nulls are in no bin (they once all went to the last), and the constant column is all in its first.
    const binned = (name: string) => (stats.find((s) => s.feature === name)?.histogram as Array<{ count: number }>).reduce((n, b) => n + b.count, 0);
    expect([binned('b'), binned('h'), binned('a')]).toEqual([900, 750, ROWS]);
    expect((stats.find((s) => s.feature === 'e')?.histogram as Array<{ count: number }>).map((b) => b.count)).toEqual([ROWS, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

    const text = stats.find((s) => s.feature === 's') as FeatureStatistics;
    expect({ count: text.count, nulls: text.nulls, distinct: text.distinctCount }).toEqual({ count: 800, nulls: 200, distinct: 4 });
    expect(text.histogram).toEqual([
      { value: 'v1', count: 200 },
      { value: 'v2', count: 200 },
      { value: 'v3', count: 200 },
      { value: 'v0', count: 200 },
    ].sort((x, y) => y.count - x.count || x.value.localeCompare(y.value)));
  });
});
