/**
 * Binary COPY, read and written without decoding values (registry/db/binary-copy.ts):
 * tuples split anywhere between chunks, nulls, a field bigger than the reader's
 * look-ahead; a COPY read off a real Postgres connection's socket (registry/db/copy-out.ts),
 * its rows across the socket's chunks, failing or cancelled midway; a round trip
 * through a real Postgres table of every type the feature store writes, decoded by type as node-postgres reads their text; and tables
 * read whole in their stored order, a range of pages per COPY (registry/db/copy-reads.ts);
 * values a writer computes, written by type; a prepared statement's rows in binary,
 * read off the socket the same way (registry/db/binary-rows.ts).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowOf, type Column, type ColumnBatch } from '../core/columns.ts';
import { mergeBy } from '../core/streams.ts';
import { arrayLiteral, binaryCopyOut, BinaryCopyReader, shortBytesCode, ShortCodeIds, binaryRows, copyIn, copyThrough, describeColumns, BinaryCopyWriter, ColumnDecoder, createKnex, dataViewOf, DataViews, decodeFields, fieldDecoder, fieldEnd, fieldStart, int4Field, sql, streamQueries, streamTablesInStoredOrder, textField, timestampField, timestampText, timestamptzMicros, type BinaryTuple, type ChunkSource } from '../registry/db/index.ts';
import { entityKeyField, entityKeyOf } from '../registry/predictions/index.ts';
import { createTestDb, type TestDb } from './helpers/services.ts';

/** A field's bytes as COPY sends them: int32 length, then the value (or -1 and nothing: null). */
function field(value: Buffer | null): Buffer {
  const length = Buffer.alloc(4);
  length.writeInt32BE(value === null ? -1 : value.length);
  return value === null ? length : Buffer.concat([length, value]);
}

const int4 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/** Every tuple of `bytes`, fed to a reader in pieces of the given sizes (cycled), as [text, int4] pairs. */
function readAll(bytes: Buffer, sizes: number[]): Array<[string | null, number | null]> {
  const rows: Array<[string | null, number | null]> = [];
  const reader = new BinaryCopyReader((t: BinaryTuple) => rows.push([textField(t, 0), int4Field(t, 1)]));
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length] as number;
    // Each piece at an offset of a bigger buffer, as a message's payload sits in a socket's chunk.
    const piece = Buffer.concat([Buffer.from('junk'), bytes.subarray(at, at + n), Buffer.from('junk')]);
    reader.feed(piece, 4, piece.length - 4);
    at += n;
  }
  reader.end();
  return rows;
}

describe('binary COPY', () => {
  const big = 'x'.repeat(20_000);
  const expected: Array<[string | null, number | null]> = [
    ['a', 1],
    [null, 2],
    ['ünïcode', null],
    [big, 4],
    ['', -5],
  ];
  const encoded = (() => {
    const out = new BinaryCopyWriter(4096);
    for (const [text, n] of expected) {
      out.tuple(2);
      out.write(field(text === null ? null : Buffer.from(text, 'utf8')));
      out.write(field(n === null ? null : int4(n)));
    }
    return Buffer.concat(out.end());
  })();

  it('reads every tuple whatever the chunks: split in the header, in a length, in a value, and past the look-ahead', async () => {
    for (const sizes of [[encoded.length], [1], [3, 7, 2], [13], [8191, 5], [100_000]]) {
      expect(readAll(encoded, sizes), `chunks of ${sizes.join(', ')}`).toEqual(expected);
    }
  });

  it('copies byte ranges through DataViews as Buffer.copy does: any length and offset, every byte pattern (NaNs as floats included), views kept per buffer', () => {
    // Bytes that are NaNs, infinities and denormals read as floats: all must land as they were.
    const source = Buffer.alloc(3000);
    for (let i = 0; i < source.length; i++) source[i] = (i * 131 + (i >> 3) * 17) & 0xff;
    source.fill(0xff, 100, 140);
    source.writeDoubleBE(Number.NaN, 200);
    source.writeUInt32BE(0x7ff00001, 300);
    const others = [Buffer.from(source), Buffer.from(source.reverse()), Buffer.alloc(3000, 0x7f)];
    const views = new DataViews();
    for (const length of [0, 1, 3, 4, 5, 31, 32, 33, 100, 1023, 1024, 1025, 2000]) {
      for (const [from, at] of [[0, 0], [1, 3], [7, 2], [250, 901], [3000 - length, 0]] as const) {
        const src = others[(length + from) % others.length] as Buffer;
        const expected = Buffer.alloc(3100, 0xaa);
        src.copy(expected, at, from, from + length);
        const got = Buffer.alloc(3100, 0xaa);
        copyThrough(src, views.of(src), from, from + length, got, dataViewOf(got), at);
        expect(got.equals(expected), `${length} bytes from ${from} to ${at}`).toBe(true);
      }
    }
    // The cache answers each buffer with a view of that buffer, however they alternate.
    for (const buf of [others[0], others[1], others[0], others[2], others[1], others[2], others[0]] as Buffer[]) {
      const view = views.of(buf);
      expect(view.buffer).toBe(buf.buffer);
      expect([view.byteOffset, view.byteLength]).toEqual([buf.byteOffset, buf.byteLength]);
    }
  });

  it('keeps ids by short-bytes code as a Map does: small and large codes, collisions, growth', () => {
    const table = new ShortCodeIds();
    const map = new Map<number, number>();
    // Codes of every length up to SHORT_BYTES (6 bytes: up to 2^51), with bytes that share their low or high 32 bits.
    const codes: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(Array.from({ length: 1 + (i % 6) }, (_, k) => (i * 131 + k * 97 + (i >> 5)) & 0xff));
      codes.push(shortBytesCode(bytes, 0, bytes.length));
    }
    codes.push(0, 2 ** 51 - 1, 2 ** 32, 2 ** 33 + 1, 2 ** 32 + 1, 1);
    for (const code of codes) {
      if (map.has(code)) continue;
      expect(table.get(code)).toBe(-1);
      map.set(code, map.size);
      table.set(code, map.get(code) as number);
    }
    expect(map.size).toBeGreaterThan(1000);
    for (const [code, id] of map) expect(table.get(code)).toBe(id);
    expect(table.get(2 ** 40 + 7)).toBe(-1);
  });

  it('refuses a stream that is not binary COPY, or ends before its trailer', () => {
    expect(() => readAll(Buffer.from('not a copy stream at all'), [64])).toThrow(/not a binary COPY stream/);
    expect(() => readAll(encoded.subarray(0, encoded.length - 2), [64])).toThrow(/ended early/);
  });

  describe('through Postgres', () => {
    let db: TestDb;
    beforeAll(async () => {
      db = await createTestDb('binary_copy');
    });
    afterAll(async () => {
      await db?.close();
    });

    it('round-trips every feature type byte for byte, and decodes texts and timestamps as Postgres sends them', async () => {
      await db.knex.raw(`create table copy_types (s text, f double precision, i bigint, b boolean, t timestamptz)`);
      await db.knex.raw(`insert into copy_types values
        ('ok', 1.5, 9007199254740991, true, '2001-03-04T05:06:07.891234Z'),
        (null, 'NaN', -3, false, '1999-12-31T23:59:59.999999Z'),
        ('ünï', null, null, null, null)`);
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
      try {
        const tuples: Buffer[] = [];
        const decoded: Array<[string | null, number | null]> = [];
        await binaryCopyOut(client, 'copy (select * from copy_types order by t nulls last) to stdout (format binary)', (t) => {
          tuples.push(Buffer.from(t.buf.subarray(fieldStart(t, 0), fieldEnd(t, t.fields - 1))));
          decoded.push([textField(t, 0), timestampField(t, 4)]);
        });
        expect(decoded).toEqual([
          [null, Date.parse('1999-12-31T23:59:59.999Z') * 1000 + 999],
          ['ok', Date.parse('2001-03-04T05:06:07.891Z') * 1000 + 234],
          ['ünï', null],
        ]);
        // Written back unchanged into a copy of the table: the same rows.
        await db.knex.raw('create table copy_types_again (like copy_types)');
        const out = new BinaryCopyWriter();
        for (const bytes of tuples) {
          out.tuple(5);
          out.write(bytes);
        }
        await pipeline(Readable.from(out.end()), client.query(copyFrom('copy copy_types_again from stdin (format binary)')));
        const same = await db.knex.raw(`select count(*)::int as n from (select * from copy_types except all select * from copy_types_again) d`);
        const again = await db.knex.raw(`select count(*)::int as n from copy_types_again`);
        expect([same.rows[0].n, again.rows[0].n]).toEqual([0, 3]);

        // Decoded by type: what node-postgres gives for the text of the same rows, and
        // timestamps as microseconds keep every digit.
        const types = ['text', 'double precision', 'bigint', 'boolean', 'timestamptz'];
        const names = ['s', 'f', 'i', 'b', 't'];
        const asDates = types.map((t) => fieldDecoder(t));
        const asMicros = types.map((t) => fieldDecoder(t, { timestamps: 'micros' }));
        const byDate: Array<Record<string, unknown>> = [];
        const byMicros: unknown[] = [];
        for (const bytes of tuples) {
          const row: Record<string, unknown> = {};
          expect(decodeFields(bytes, 0, bytes.length, asDates, names, row, 0)).toBe(5);
          byDate.push(row);
          const micros: Record<string, unknown> = {};
          decodeFields(bytes, 0, bytes.length, asMicros, names, micros, 0);
          byMicros.push(micros.t);
        }
        expect(byDate).toEqual((await db.knex.raw('select * from copy_types order by t nulls last')).rows);
        expect(byMicros).toEqual([946_684_799_999_999, Date.parse('2001-03-04T05:06:07.891Z') * 1000 + 234, null]);
        expect(byMicros.slice(0, 2).map((us) => timestampText(us as number))).toEqual(['1999-12-31T23:59:59.999999Z', '2001-03-04T05:06:07.891234Z']);
        expect(() => fieldDecoder('jsonb')).toThrow(/no binary decoder/);

        // Decoded into typed columns (batch inference's batches): the same values, a bool as 1/0, nulls masked.
        const columns = new ColumnDecoder(types.map((pgType, i) => ({ name: names[i] as string, pgType })), tuples.length);
        tuples.forEach((bytes, row) => expect(columns.fields(bytes, dataViewOf(bytes), 0, bytes.length, row, 0)).toBe(5));
        const micros = byMicros.map((t, row) => ({ ...(byDate[row] as Record<string, unknown>), t }));
        expect(Array.from({ length: tuples.length }, (_, row) => rowOf(columns.batch, row))).toEqual(micros);
        expect(columns.batch.columns.get('b')).toMatchObject({ type: 'bool', values: Float64Array.from([0, 1, 0]), nulls: Uint8Array.from([0, 0, 1]) });
        expect(() => new ColumnDecoder([{ name: 'j', pgType: 'jsonb' }], 1)).toThrow(/no binary decoder/);
      } finally {
        await db.knex.client.releaseConnection(client);
      }
    });

    it('reads a COPY off the socket whatever its chunks: 50,000 rows, one of them longer than a socket read, notices between them', async () => {
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
      try {
        await client.query(`create function pg_temp.noisy(i int) returns int language plpgsql as $$ begin if i % 5000 = 0 then raise notice 'row %', i; end if; return i; end $$`);
        const seen: number[] = [];
        const wrong: string[] = [];
        const rows = await binaryCopyOut(
          client,
          `copy (select pg_temp.noisy(i), repeat(chr(97 + i % 26), i % 300), case when i = 25000 then repeat('y', 1000000) end from generate_series(1, 50000) i) to stdout (format binary)`,
          (t) => {
            const i = int4Field(t, 0) as number;
            seen.push(i);
            const text = textField(t, 1);
            if (text !== String.fromCharCode(97 + (i % 26)).repeat(i % 300)) wrong.push(`text of ${i}`);
            const big = textField(t, 2);
            if (i === 25000 ? big?.length !== 1_000_000 || big !== 'y'.repeat(1_000_000) : big !== null) wrong.push(`big of ${i}`);
          },
        );
        expect(rows).toBe(50_000);
        expect(seen).toEqual(Array.from({ length: 50_000 }, (_, k) => k + 1));
        expect(wrong).toEqual([]);
        // The connection is pg's again.
        expect((await client.query('select 41 + 1 as n')).rows).toEqual([{ n: 42 }]);
      } finally {
        await db.knex.client.releaseConnection(client);
      }
    });

    it("fails with Postgres' error when the COPY fails or is cancelled midway, or with the reader's when it throws, and the connection serves the next query", async () => {
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient & { processID: number };
      try {
        let before = 0;
        await expect(binaryCopyOut(client, 'copy (select 1 / (i - 30000) from generate_series(1, 50000) i) to stdout (format binary)', () => before++)).rejects.toThrow(/division by zero/);
        expect(before).toBeGreaterThan(0);
        expect((await client.query('select 1 as n')).rows).toEqual([{ n: 1 }]);

        // The reader's own error: the COPY is read to its end, unseen, and fails with it.
        let calls = 0;
        await expect(
          binaryCopyOut(client, 'copy (select i from generate_series(1, 50000) i) to stdout (format binary)', () => {
            if (++calls === 10) throw new Error('the tenth row is refused');
          }),
        ).rejects.toThrow(/the tenth row is refused/);
        expect(calls).toBe(10);
        expect((await client.query('select 3 as n')).rows).toEqual([{ n: 3 }]);

        // Statements that are not a COPY TO are refused, and leave the connection usable.
        await expect(binaryCopyOut(client, 'select 1', () => undefined)).rejects.toThrow(/returns rows/);
        await client.query('create temp table copy_in_target (n int)');
        await expect(binaryCopyOut(client, 'copy copy_in_target from stdin', () => undefined)).rejects.toThrow(/not a COPY FROM/);
        expect((await client.query('select count(*)::int as n from copy_in_target')).rows).toEqual([{ n: 0 }]);

        let cancel: Promise<unknown> | undefined;
        let read = 0;
        const copy = binaryCopyOut(client, 'copy (select i from generate_series(1, 100000000) i) to stdout (format binary)', () => {
          // A knex query runs once it is awaited or then'd: now.
          if (++read === 1000) cancel = db.knex.raw('select pg_cancel_backend(?)', [client.processID]).then(() => undefined);
        });
        await expect(copy).rejects.toThrow(/canceling statement/);
        await cancel;
        expect(read).toBeGreaterThanOrEqual(1000);
        expect(read).toBeLessThan(100_000_000);
        expect((await client.query('select 2 as n')).rows).toEqual([{ n: 2 }]);
      } finally {
        await db.knex.client.releaseConnection(client);
      }
    });

    it('runs a prepared statement with binary rows: decoded as node-postgres reads their text, parsed once per connection, its array parameters quoted', async () => {
      await db.knex.raw(`create table row_types (k text primary key, f double precision, i bigint, b boolean, t timestamptz, n int)`);
      const keys = ['plain', 'with "quotes"', 'back\\slash', 'comma, {brace}', 'NULL', 'ünï'];
      for (const [i, k] of keys.entries()) {
        await db.knex.raw('insert into row_types values (?, ?, ?, ?, ?, ?)', [k, i + 0.5, 2 ** 53 - 1 - i, i % 2 === 0, new Date(Date.UTC(2026, 0, 1 + i)), i === 3 ? null : -i]);
      }
      const statement = { name: 'fti_test_binary_rows', text: 'select q.ord, r.* from unnest($1::text[]) with ordinality as q(k, ord) join row_types r using (k) order by q.ord' };
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
      try {
        const asked = [...keys].reverse();
        const columns = await describeColumns(client, statement.text, [arrayLiteral([])]);
        expect(columns.map((c) => c.name)).toEqual(['ord', 'k', 'f', 'i', 'b', 't', 'n']);
        const read = async () => {
          const rows: Array<Record<string, unknown>> = [];
          const n = await binaryRows(client, statement, [arrayLiteral(asked)], (t) => {
            const row: Record<string, unknown> = {};
            for (let i = 0; i < t.fields; i++) row[columns[i]?.name as string] = t.length[i] === -1 ? null : columns[i]?.decode(t.buf, t.start[i] as number, t.length[i] as number);
            rows.push(row);
          });
          expect(n).toBe(rows.length);
          return rows;
        };
        const first = await read();
        // Every key found, whatever its quoting; values as pg's text parsers give them.
        expect(first.map((r) => r.k)).toEqual(asked);
        const { rows: expected } = await client.query({ text: statement.text, values: [asked] });
        expect(first).toEqual(expected);
        expect(await read()).toEqual(first);
        // Parsed once on this connection (and known to pg's own queries as parsed).
        expect((await client.query(`select count(*)::int as n from pg_prepared_statements where name = '${statement.name}'`)).rows).toEqual([{ n: 1 }]);
        await expect(binaryRows(client, { name: statement.name, text: 'select 1' }, [], () => undefined)).rejects.toThrow(/another statement/);

        // Rows across the socket's chunks, one of them longer than a read.
        let count = 0;
        let big = 0;
        await binaryRows(client, { name: 'fti_test_binary_rows_many', text: "select i, case when i = 777 then repeat('z', 1000000) end from generate_series(1, 20000) i" }, [], (t) => {
          if (t.buf.readInt32BE(t.start[0] as number) === ++count && t.length[1] === 1_000_000) big = count;
        });
        expect([count, big]).toEqual([20_000, 777]);

        // Postgres' error, and the reader's, fail the call; the connection serves the next one.
        await expect(binaryRows(client, { name: 'fti_test_binary_rows_fails', text: 'select 1 / (i - 3) from generate_series(1, 5) i' }, [], () => undefined)).rejects.toThrow(/division by zero/);
        await expect(
          binaryRows(client, statement, [arrayLiteral(asked)], () => {
            throw new Error('refused');
          }),
        ).rejects.toThrow(/refused/);
        expect(await read()).toEqual(first);
        await expect(describeColumns(client, 'select 1::numeric as x', [])).rejects.toThrow(/column x has type OID 1700/);
        expect(() => arrayLiteral([{}])).toThrow(/must be a number, boolean, string or null/);
      } finally {
        await db.knex.client.releaseConnection(client);
      }
    });

    it('writes computed values by type (text, double, bigint, timestamptz, boolean, null) as Postgres reads them', async () => {
      await db.knex.raw(`create table copy_written (s text, f double precision, i bigint, t timestamptz, b boolean)`);
      const rows: Array<[string | null, number | null, number | null, number | null, boolean | null]> = [
        ['AKN', 1.5, 9007199254740991, Date.parse('2001-03-04T05:06:07.891Z') * 1000 + 234, true],
        ['ünï€😀', Number.NaN, -9007199254740991, Date.parse('1999-12-31T23:59:59.999Z') * 1000 + 999, false],
        ['', -0, -1, Date.parse('1969-07-20T20:17:40Z') * 1000, null],
        [null, Number.NEGATIVE_INFINITY, 4294967296, null, true],
        ['x'.repeat(300), null, null, 0, false],
      ];
      // A small chunk: fields and tuples cross its end (a text longer than a chunk takes the bytes path).
      const out = new BinaryCopyWriter(64);
      for (const [s, f, i, t, b] of rows) {
        out.tuple(5);
        if (s === null) out.nullField();
        else out.text(s);
        if (f === null) out.nullField();
        else out.float8(f);
        if (i === null) out.nullField();
        else out.int8(i);
        if (t === null) out.nullField();
        else out.timestamptz(t);
        if (b === null) out.nullField();
        else out.bool(b);
      }
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
      try {
        await pipeline(Readable.from(out.end()), client.query(copyFrom('copy copy_written from stdin (format binary)')));
      } finally {
        await db.knex.client.releaseConnection(client);
      }
      const back = await db.knex.raw(`select s, f::text as f, i::text as i, to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as t, b from copy_written`);
      expect(back.rows).toEqual([
        { s: 'AKN', f: '1.5', i: '9007199254740991', t: '2001-03-04T05:06:07.891234', b: true },
        { s: 'ünï€😀', f: 'NaN', i: '-9007199254740991', t: '1999-12-31T23:59:59.999999', b: false },
        { s: '', f: '-0', i: '-1', t: '1969-07-20T20:17:40.000000', b: null },
        { s: null, f: '-Infinity', i: '4294967296', t: null, b: true },
        { s: 'x'.repeat(300), f: null, i: null, t: '1970-01-01T00:00:00.000000', b: false },
      ]);
    });

    it("COPYs a writer's chunks in, refilling the chunks the socket has sent: every row as written; a failure, Postgres' error or an abort midway ends the COPY and the connection serves the next query", async () => {
      await db.knex.raw(`create table copy_recycled (i int check (i <> 999999), s text)`);
      const ROWS = 200_000;
      const text = (i: number) => `row ${i} ${'abcdefghij'.repeat(i % 7)}`;
      // 64 KB chunks (above Buffer.poolSize, so each is a buffer of its own): about a hundred of them.
      const fill = (rows: number, options: { poison?: number; throwAt?: number; abortAt?: number; abort?: AbortController } = {}) =>
        async function* (chunks: ChunkSource): AsyncGenerator<Buffer> {
          const out = new BinaryCopyWriter(64 * 1024, chunks);
          for (let i = 0; i < rows; i++) {
            if (i === options.throwAt) throw new Error('the source failed');
            if (i === options.abortAt) options.abort?.abort();
            out.tuple(2);
            out.int4(i === options.poison ? 999999 : i);
            out.text(text(i));
            if ((i & 1023) === 0) yield* out.take();
          }
          yield* out.end();
        };
      const counted = (source: ChunkSource) => ({
        taken: 0,
        take(size: number) {
          const chunk = source.take(size);
          if (chunk) this.taken++;
          return chunk;
        },
      });
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
      try {
        let recycled = 0;
        await copyIn(client, 'copy copy_recycled from stdin (format binary)', (chunks) => {
          const c = counted(chunks);
          const rows = fill(ROWS)(c);
          return (async function* () {
            yield* rows;
            recycled = c.taken;
          })();
        });
        expect(recycled).toBeGreaterThan(10);
        const expected = Array.from({ length: ROWS }, (_, i) => text(i)).join(',');
        const back = await client.query(`select count(*)::int as n, sum(i)::float8 as total, string_agg(s, ',' order by i) = $1 as same from copy_recycled`, [expected]);
        expect(back.rows).toEqual([{ n: ROWS, total: (ROWS * (ROWS - 1)) / 2, same: true }]);

        const rowsNow = async () => (await client.query('select count(*)::int as n from copy_recycled')).rows[0] as { n: number };
        await expect(copyIn(client, 'copy copy_recycled from stdin (format binary)', fill(ROWS, { poison: 150_000 }))).rejects.toThrow(/check constraint/);
        expect(await rowsNow()).toEqual({ n: ROWS });
        await expect(copyIn(client, 'copy copy_recycled from stdin (format binary)', fill(ROWS, { throwAt: 100_000 }))).rejects.toThrow(/the source failed/);
        expect(await rowsNow()).toEqual({ n: ROWS });
        const abort = new AbortController();
        await expect(copyIn(client, 'copy copy_recycled from stdin (format binary)', fill(ROWS, { abortAt: 100_000, abort }), abort.signal)).rejects.toThrow(/aborted/);
        expect(await rowsNow()).toEqual({ n: ROWS });
      } finally {
        await db.knex.client.releaseConnection(client);
      }
    });

    it('writes integers and jsonb (from JSON text, any size) as Postgres reads them', async () => {
      await db.knex.raw(`create table copy_written_json (n integer, j jsonb)`);
      const rows: Array<[number, string]> = [
        [2_147_483_647, '{"flight_id":123}'],
        [-2_147_483_648, '{"airport":"ünï€😀","n":null}'],
        [0, `{"long":${JSON.stringify('x'.repeat(300))}}`],
      ];
      const out = new BinaryCopyWriter(64);
      for (const [n, j] of rows) {
        out.tuple(2);
        out.int4(n);
        out.jsonb(j);
      }
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
      try {
        await pipeline(Readable.from(out.end()), client.query(copyFrom('copy copy_written_json from stdin (format binary)')));
      } finally {
        await db.knex.client.releaseConnection(client);
      }
      const back = await db.knex.raw(`select n, j from copy_written_json`);
      expect(back.rows).toEqual(rows.map(([n, j]) => ({ n, j: JSON.parse(j) as unknown })));
    });

    it("writes a prediction's entity key as jsonb byte for byte as JSON.stringify prints it: integers' digits written directly, other values printed", async () => {
      // Both sides of 2^31 (below it the digits come by int32 arithmetic), and -0.
      const ids = [0, -1, 9_007_199_254_740_991, -9_007_199_254_740_991, 1.5, Number.NaN, 10, 123_456_789, 2_147_483_647, 2_147_483_648, -2_147_483_648, -2_147_483_649, 99, -0, 4_294_967_296];
      const n = ids.length;
      const nulls = new Uint8Array(n);
      nulls[6] = 1;
      const batch: ColumnBatch = {
        size: n,
        columns: new Map<string, Column>([
          ['flight_id', { type: 'int', values: Float64Array.from(ids), nulls }],
          ['airport', { type: 'text', values: ['AKN', 'ü"\\€😀', null, '', 'x'.repeat(300), 'a\nb', 'ORD', 'SFO', 'A', 'B', 'C', 'D', 'E', 'F', 'G'] }],
          ['early', { type: 'bool', values: Float64Array.from(ids, (_, i) => i % 2), nulls: new Uint8Array(n) }],
        ]),
      };
      const keys = ['flight_id', 'airport', 'early'];
      const write = entityKeyField(batch, keys);
      const out = new BinaryCopyWriter(512);
      for (let i = 0; i < n; i++) {
        out.tuple(2);
        out.int4(i);
        write(out, i);
      }
      const bytes = Buffer.concat([...out.end()]);
      // Past the header (11 bytes of signature, flags, extension length): per tuple a count, the int4, then the jsonb field.
      let at = 19;
      for (let i = 0; i < n; i++) {
        at += 2 + 8;
        const length = bytes.readInt32BE(at);
        const text = bytes.subarray(at + 4, at + 4 + length);
        expect(text[0]).toBe(1);
        expect(text.subarray(1).toString('utf8')).toBe(JSON.stringify(entityKeyOf(rowOf(batch, i), keys)));
        at += 4 + length;
      }
      await db.knex.raw(`create table copy_written_keys (n integer, j jsonb)`);
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
      try {
        await pipeline(Readable.from([bytes]), client.query(copyFrom('copy copy_written_keys from stdin (format binary)')));
      } finally {
        await db.knex.client.releaseConnection(client);
      }
      const back = await db.knex.raw(`select j from copy_written_keys order by n`);
      expect(back.rows.map((r: { j: unknown }) => r.j)).toEqual(Array.from({ length: n }, (_, i) => JSON.parse(JSON.stringify(entityKeyOf(rowOf(batch, i), keys)))));
    });

    it('reads timestamps as microseconds from the text Postgres prints, in any time zone, every digit kept', async () => {
      const client = (await db.knex.client.acquireConnection()) as pg.PoolClient;
      try {
        const values = ['2001-03-04 05:06:07.891234+00', '1999-12-31 23:59:59.999999+00', '2001-01-01 00:00:00+00', '0099-06-30 12:00:00.5+00', '1969-07-20 20:17:40+00'];
        // Offsets of whole hours, half hours and (before 1900) seconds.
        for (const zone of ['UTC', 'Asia/Kolkata', 'America/St_Johns', 'Europe/Amsterdam']) {
          await client.query(`set timezone = '${zone}'`);
          const result = await client.query<{ text: string; us: string }>(
            `select t::text as text, (extract(epoch from t) * 1000000)::bigint::text as us from unnest($1::timestamptz[]) t`,
            [values],
          );
          for (const r of result.rows) expect(timestamptzMicros(r.text), `${zone}: ${r.text}`).toBe(Number(r.us));
        }
      } finally {
        await client.query('reset timezone');
        await db.knex.client.releaseConnection(client);
      }
      const [stream] = streamQueries<{ t: unknown }>(db.knex, [{ sql: `select timestamptz '2001-03-04 05:06:07.891234+00' as t` }], 10, { timestampsAsMicros: true });
      const read: unknown[] = [];
      for await (const batch of stream ?? []) read.push(...batch.map((r) => r.t));
      expect(read).toEqual([Date.parse('2001-03-04T05:06:07.891Z') * 1000 + 234]);
      expect(() => timestamptzMicros('infinity')).toThrow(/not a timestamp/);
      expect(() => timestamptzMicros('2001-01-01 00:00:00+00 BC')).toThrow(/not a timestamp/);
    });

    it('reads tables in their stored order, a range of pages per COPY, the rows a cursor gives, on one connection', async () => {
      // Two tables written in an order that is not their rows' (as a dataset's partitions are, by shuffle key),
      // over many pages, by CREATE TABLE AS as a dataset's are (rows appended in order, no free-space map).
      const columns = ['k', 'f', 'i', 'n', 's', 'b', 't', 'part'];
      for (const [part, table] of ['stored_a', 'stored_b'].entries()) {
        await db.knex.raw(
          `create table ${table} as
           select (g * 7919 + ${part}) % 5003 as k, case when g % 11 = 0 then null else g / 3.0 end::double precision as f,
                  g::bigint * 4294967311 as i, (g % 300)::smallint as n, case when g % 13 = 0 then null else repeat('ü', g % 40) end as s,
                  g % 2 = 0 as b, timestamptz '2001-01-01' + g * interval '1.000001 second' as t,
                  case when g % 4 = 0 then 'held out' else 'kept' end as part
           from generate_series(1, 3000) g order by (g * 7919 + ${part}) % 5003`,
        );
      }
      const pages = (await db.knex.raw(`select pg_relation_size('stored_a') / 8192 as n`)).rows[0].n;
      expect(Number(pages)).toBeGreaterThan(4);
      const where = sql`part = ${'kept'}`;
      const single = createKnex({ url: db.url, schema: db.schema, poolMax: 1, applicationName: 'fti-test-stored-order' });
      try {
        const reads = ['stored_a', 'stored_b'].map((table) => ({ table, columns, where }));
        const byCopy = await streamTablesInStoredOrder(single, reads, { batchSize: 100, pagesPerCopy: 2 });
        expect(byCopy).toHaveLength(2);
        const copied: Array<Record<string, unknown>> = [];
        for await (const batch of mergeBy(byCopy ?? [], (r) => r.k as number, 100)) copied.push(...batch);
        const byCursor = streamQueries<Record<string, unknown>>(
          single,
          reads.map((r) => ({ sql: `select ${columns.join(', ')} from ${r.table} where part = 'kept'` })),
          100,
        );
        const fetched: Array<Record<string, unknown>> = [];
        for await (const batch of mergeBy(byCursor, (r) => r.k as number, 100)) fetched.push(...batch);
        // 4,500 rows of both, the same values (nulls, bigints, text, timestamps) in the same order: the merge of two tables read in stored order.
        expect(copied).toHaveLength(4500);
        expect(copied).toEqual(fetched);
        expect(copied.map((r) => r.k)).toEqual(fetched.map((r) => r.k).sort((a, b) => (a as number) - (b as number)));
        // One table alone: the order it is stored in, page by page.
        const [alone] = (await streamTablesInStoredOrder(single, [{ table: 'stored_a', columns: ['k'] }], { batchSize: 1000, pagesPerCopy: 3 })) ?? [];
        const keys: unknown[] = [];
        for await (const batch of alone ?? []) keys.push(...batch.map((r) => r.k));
        expect(keys).toEqual((await db.knex.raw('select k from stored_a order by ctid')).rows.map((r: { k: number }) => r.k));
      } finally {
        await single.destroy();
      }
      // A column of a type without a binary decoder: the caller reads by cursor instead.
      await db.knex.raw('create table stored_numeric (x numeric)');
      expect(await streamTablesInStoredOrder(db.knex, [{ table: 'stored_numeric', columns: ['x'] }], { batchSize: 10 })).toBeUndefined();
    });

    it('prints timestamps to the microsecond, whole milliseconds as Date does', () => {
      expect(timestampText(Date.parse('2001-03-04T05:06:07.891Z') * 1000 + 4)).toBe('2001-03-04T05:06:07.891004Z');
      expect(timestampText(Date.parse('2001-03-04T05:06:07Z') * 1000)).toBe('2001-03-04T05:06:07.000Z');
      expect(timestampText(-1)).toBe('1969-12-31T23:59:59.999999Z');
    });
  });
});
