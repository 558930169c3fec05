/**
 * The split statistics the stream plan gathers as it writes a chunk
 * (registry/training/split-statistics.ts) against Postgres' own figures over the same
 * rows stored in the same order: the moments trainMoments reads, bit for bit, the
 * category counts and the split counts. The values are spread over thirty orders of
 * magnitude, so that a sum in any other order, or by any other update, comes out
 * different in its last digits; infinities are in one column. Where Postgres would take
 * the figures another way (a bigint past 2^53) or refuse them (an overflow), the tap
 * leaves them to SQL.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { raw, sql } from '../registry/db/index.ts';
import { SplitStatisticsTap, trainMoments } from '../registry/training/index.ts';
import { createTestDb, type TestDb } from './helpers/services.ts';

type Value = number | bigint | string | null;

const COLUMNS = [
  { name: 'id', pgType: 'integer' },
  { name: 'x', pgType: 'double precision' },
  { name: 'inf', pgType: 'double precision' },
  { name: 'n', pgType: 'bigint' },
  { name: 'i', pgType: 'integer' },
  { name: 's', pgType: 'smallint' },
  { name: 'c', pgType: 'text' },
  { name: '_split', pgType: 'text' },
] as const;
const NUMERIC = ['x', 'inf', 'n', 'i', 's'].map((name) => ({ name }));
const CATEGORICAL = [{ name: 'c' }];

/** A seeded generator (mulberry32): the same rows every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One row's fields as binary COPY writes them: a 4-byte length (-1: null), then the bytes. */
function fields(values: readonly Value[]): Buffer {
  const parts = values.map((v, k) => {
    if (v === null) return Buffer.from([0xff, 0xff, 0xff, 0xff]);
    let bytes: Buffer;
    switch (COLUMNS[k]?.pgType) {
      case 'double precision':
        bytes = Buffer.alloc(8);
        bytes.writeDoubleBE(v as number);
        break;
      case 'bigint':
        bytes = Buffer.alloc(8);
        bytes.writeBigInt64BE(BigInt(v));
        break;
      case 'integer':
        bytes = Buffer.alloc(4);
        bytes.writeInt32BE(v as number);
        break;
      case 'smallint':
        bytes = Buffer.alloc(2);
        bytes.writeInt16BE(v as number);
        break;
      default:
        bytes = Buffer.from(v as string, 'utf8');
    }
    const length = Buffer.alloc(4);
    length.writeInt32BE(bytes.length);
    return Buffer.concat([length, bytes]);
  });
  return Buffer.concat(parts);
}

/** Told to a fresh tap and inserted in the same order into a fresh table: the tap's figures and the table's. */
async function tapAndTable(db: TestDb, table: string, rows: Value[][]): Promise<SplitStatisticsTap> {
  const tap = new SplitStatisticsTap(NUMERIC, CATEGORICAL);
  tap.columns(COLUMNS);
  // Several rows in one buffer, at offsets, as a COPY's pieces hold them.
  const bufs = rows.map(fields);
  const block = Buffer.concat([Buffer.alloc(3), ...bufs]);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  let at = 3;
  for (const b of bufs) {
    tap.row({ buf: [block], view: [view], start: new Int32Array([at]), count: new Int32Array([COLUMNS.length]) });
    at += b.length;
  }
  // Created and filled by one COPY in one transaction, as the stream plan writes a chunk:
  // Postgres then appends every page (a table new in its transaction skips the free
  // space map), so the table is stored in the order written. (Separate INSERTs may put a
  // later row in an earlier page's free space.)
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query('select set_config($1, $2, false)', ['search_path', db.schema]);
    await client.query('begin');
    await client.query(`create table ${table} (id integer, x double precision, inf double precision, n bigint, i integer, s smallint, c text, _split text)`);
    const text = rows.map((r) => r.map((v) => (v === null ? '\\N' : String(v))).join('\t')).join('\n');
    await pipeline(Readable.from([`${text}\n`]), client.query(copyFrom(`copy ${table} from stdin (freeze)`)));
    await client.query('commit');
  } finally {
    await client.end();
  }
  return tap;
}

describe('split statistics gathered as the stream plan writes', () => {
  let db: TestDb;

  beforeAll(async () => {
    db = await createTestDb('split_statistics');
  });

  afterAll(async () => {
    await db?.close();
  });

  it("are Postgres' own figures over the same rows in the same order: moments bit for bit, categories, split counts", async () => {
    const next = random(7);
    const splits = ['train', 'train', 'train', 'validation', 'test'];
    const rows: Value[][] = Array.from({ length: 6000 }, (_, k) => {
      const magnitude = 10 ** (next() * 30 - 15);
      return [
        k,
        next() < 0.05 ? null : (next() - 0.3) * magnitude,
        k === 100 ? Number.POSITIVE_INFINITY : k === 4000 ? Number.NEGATIVE_INFINITY : next(),
        next() < 0.05 ? null : BigInt(Math.floor((next() - 0.5) * 2 ** 52)),
        Math.floor((next() - 0.5) * 2 ** 31),
        Math.floor((next() - 0.5) * 2 ** 15),
        // Few values, some with equal counts; UTF-8 beyond ASCII; the empty string; nulls.
        next() < 0.1 ? null : (['ATL', 'ORD', 'Zürich', '', 'a-much-longer-category-name'][Math.floor(next() * 5)] as string),
        // The rows with infinities in the train split, where the moments are taken.
        k === 100 || k === 4000 ? 'train' : (splits[Math.floor(next() * splits.length)] as string),
      ];
    });
    const tap = await tapAndTable(db, 'tap_rows', rows);
    const gathered = tap.result();
    const expected = await db.knex.transaction((trx) =>
      trainMoments(
        trx,
        'tap_rows',
        NUMERIC.map((f) => ({ ...f, type: 'float' })),
      ),
    );
    expect(gathered.moments).toBeDefined();
    // The infinities: Postgres' NaN for the column's variance and mean, as its updates give.
    expect(Number.isNaN(expected.inf?.std)).toBe(true);
    // The table holds the rows in the order they were told.
    const stored = (await raw(db.knex, sql`select id from tap_rows`)) as { rows: Array<{ id: number }> };
    expect(stored.rows.map((r) => r.id)).toEqual(rows.map((r) => r[0]));
    // Not merely close: every figure to the last bit (toEqual compares numbers with Object.is).
    expect(gathered.moments).toEqual(expected);

    const counts = (await raw(db.knex, sql`select c, count(*)::int as n from tap_rows where _split = 'train' and c is not null group by 1`)) as { rows: Array<{ c: string; n: number }> };
    expect(gathered.categories?.c).toEqual(new Map(counts.rows.map((r) => [r.c, r.n])));
    const splitRows = (await raw(db.knex, sql`select _split, count(*)::int as n from tap_rows group by 1`)) as { rows: Array<{ _split: string; n: number }> };
    expect(gathered.counts).toEqual({ train: 0, validation: 0, test: 0, ...Object.fromEntries(splitRows.rows.map((r) => [r._split, r.n])) });
  });

  it('gives the same figures when a row comes in ranges (the spine and each join), a range absent where its join matched nothing', () => {
    const next = random(11);
    const rows: Value[][] = Array.from({ length: 3000 }, (_, k) => {
      // A row whose first range is absent: its fields there are all null.
      const absent = next() < 0.1;
      return [
        absent ? null : k,
        absent || next() < 0.05 ? null : (next() - 0.3) * 10 ** (next() * 20 - 10),
        absent ? null : next(),
        BigInt(Math.floor((next() - 0.5) * 2 ** 40)),
        Math.floor((next() - 0.5) * 2 ** 31),
        Math.floor((next() - 0.5) * 2 ** 15),
        next() < 0.1 ? null : (['ATL', 'ORD', 'Zürich'][Math.floor(next() * 3)] as string),
        (['train', 'train', 'validation', 'test'] as const)[Math.floor(next() * 4)] as string,
      ];
    });
    const told = (counts: number[]) => {
      const tap = new SplitStatisticsTap(NUMERIC, CATEGORICAL);
      tap.columns(COLUMNS);
      for (const r of rows) {
        const block = fields(r);
        const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
        const ranges = { buf: [] as Array<Buffer | undefined>, view: [] as Array<DataView | undefined>, start: new Int32Array(counts.length), count: Int32Array.from(counts) };
        let at = 0;
        let column = 0;
        counts.forEach((n, k) => {
          const nulls = r.slice(column, column + n).every((v) => v === null);
          ranges.buf[k] = n > 0 && nulls ? undefined : block;
          ranges.view[k] = view;
          ranges.start[k] = at;
          for (let f = 0; f < n; f++, column++) at += 4 + Math.max(0, block.readInt32BE(at));
        });
        tap.row(ranges);
      }
      return tap.result();
    };
    const whole = told([COLUMNS.length]);
    expect(whole.counts.train).toBeGreaterThan(1000);
    expect(whole.moments?.x?.count).toBeLessThan(whole.counts.train);
    for (const counts of [[3, 5], [3, 0, 5], [5, 3], [1, 1, 1, 1, 1, 1, 1, 1]]) expect(told(counts)).toEqual(whole);
  });

  it('leaves the moments to SQL past 2^53 and where Postgres would report an overflow, and a non-text category to SQL', async () => {
    const row = (x: number, n: bigint): Value[] => [0, x, 0, n, 0, 0, 'a', 'train'];
    const big = await tapAndTable(db, 'tap_big', [row(1, 2n ** 60n), row(2, 3n)]);
    expect(big.result().moments).toBeUndefined();
    expect(big.result().categories?.c).toEqual(new Map([['a', 2]]));

    const overflowing = await tapAndTable(db, 'tap_overflow', [row(1e308, 1n), row(1e308, 2n)]);
    expect(overflowing.result().moments).toBeUndefined();
    // Postgres itself refuses it: the figures are never made up.
    await expect(db.knex.transaction((trx) => trainMoments(trx, 'tap_overflow', [{ name: 'x', type: 'float' }]))).rejects.toThrow(/out of range/);

    const tap = new SplitStatisticsTap([{ name: 'x' }], [{ name: 'i' }]);
    tap.columns(COLUMNS);
    expect(tap.result().categories).toBeUndefined();
    expect(tap.result().moments).toEqual({ x: { count: 0, mean: 0, std: 0 } });
  });
});
