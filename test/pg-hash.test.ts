/**
 * Postgres's hashtext of a key's text, computed in Node from the binary fields
 * Postgres sends (registry/db/pg-hash.ts), checked against a real Postgres over
 * values chosen to reach every path: bigints near 2^53 and at the int64 limits,
 * negative ones; timestamps before 1970, before 1 AD, after 9999 and beyond 2^53
 * microseconds, with and without a fraction of a second, at midnight; texts empty,
 * of 1 to 40 bytes (every tail length of the hash), non-ASCII.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../core/random.ts';
import { binaryCopyOut, dataViewOf, pgHashBytes, PgText, type BinaryTuple } from '../registry/db/index.ts';
import { createTestDb, type TestDb } from './helpers/services.ts';

describe("Postgres's hashtext in Node (registry/db/pg-hash.ts)", () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb('pg_hash');
  });
  afterAll(async () => {
    await db?.close();
  });

  it('hashes bytes of every length as hashtext does', async () => {
    const texts = Array.from({ length: 60 }, (_, n) => Array.from({ length: n }, (_, i) => String.fromCharCode(33 + ((i * 7 + n) % 90))).join(''));
    texts.push('ünï|日本|🙂', '|', "'quoted'");
    const result = await db.knex.raw<{ rows: Array<{ t: string; h: number }> }>('select t, hashtext(t) as h from unnest(?::text[]) as t', [texts]);
    for (const { t, h } of result.rows) {
      const bytes = Buffer.from(t, 'utf8');
      expect([t, pgHashBytes(bytes, bytes.length)]).toEqual([t, h]);
    }
  });

  it("prints bigints and UTC timestamps as ::text does, and hashes a spine key's text the same", async () => {
    const random = mulberry32(7);
    const ids = ['0', '-1', '9', '10', '-10', '9007199254740991', '9007199254740992', '-9007199254740993', '9223372036854775807', '-9223372036854775808', '123456789012'];
    for (let i = 0; i < 400; i++) ids.push(String(BigInt(Math.floor((random() - 0.5) * 2 ** 53)) * BigInt(i % 3 === 0 ? 1024 : 1)));
    // Whole seconds from 1970 and a microsecond part, chosen to cover BC dates, far futures, whole seconds and midnights.
    const seconds: string[] = ['0', '-1', '946684800', '-62135596800', '-62135596801', '253402300799', '253402300800', '-210866803200', '9224318015999', '86399'];
    const micros: number[] = [0, 1, 999999, 500000, 120000, 0, 0, 0, 0, 0];
    for (let i = 0; i < 400; i++) {
      const span = i % 4 === 0 ? 9.2e12 : i % 4 === 1 ? 6e10 : 4e9;
      seconds.push(String(Math.floor(Math.max(-210866803200, (random() - 0.3) * span))));
      micros.push(i % 5 === 0 ? 0 : Math.floor(random() * 1e6));
    }
    const keys = ['', 'ORD', 'é', '日本語のキー', 'a|b', 'x'.repeat(37)];
    const query = `copy (
      select i::bigint as id, t, k, (t at time zone 'UTC')::text as printed,
             hashtext(i::text || '|' || (t at time zone 'UTC')::text || '+00') as by_id,
             hashtext(k::text || '|' || i::text || '|' || (t at time zone 'UTC')::text || '+00') as by_key
      from unnest(array[${ids.map((x) => `'${x}'::bigint`).join(',')}]) with ordinality as a(i, n)
      join unnest(array[${seconds.map((s, n) => `to_timestamp(${s}::float8) + interval '${micros[n]} microseconds'`).join(',')}]) with ordinality as b(t, m) on b.m = (a.n % ${seconds.length}) + 1 or b.m = a.n
      cross join unnest(array[${keys.map((k) => `'${k}'`).join(',')}]::text[]) as k
    ) to stdout (format binary)`;
    const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
    let rows = 0;
    const text = new PgText();
    const mismatches: string[] = [];
    try {
      await binaryCopyOut(client, query, (t: BinaryTuple) => {
        const view = dataViewOf(t.buf);
        const id = t.start[0] as number;
        const time = t.start[1] as number;
        text.reset();
        text.timestampUtc(view, time);
        const printed = t.buf.toString('utf8', t.start[3], (t.start[3] as number) + (t.length[3] as number));
        if (text.toString() !== printed) mismatches.push(`${printed} printed as ${text.toString()}`);
        text.reset();
        text.int8(view, id);
        text.ascii('|');
        text.timestampUtc(view, time);
        text.ascii('+00');
        if (text.hash() !== view.getInt32(t.start[4] as number)) mismatches.push(`hash of ${text.toString()}`);
        text.reset();
        text.raw(t.buf, t.start[2] as number, t.length[2] as number);
        text.ascii('|');
        text.int8(view, id);
        text.ascii('|');
        text.timestampUtc(view, time);
        text.ascii('+00');
        if (text.hash() !== view.getInt32(t.start[5] as number)) mismatches.push(`hash of ${text.toString()}`);
        rows++;
      });
    } finally {
      await db.knex.client.releaseConnection(client);
    }
    expect(rows).toBeGreaterThan(4000);
    expect(mismatches.slice(0, 10)).toEqual([]);
  });
});
