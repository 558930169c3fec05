/**
 * Tables read in their stored order by binary COPY, a range of pages at a time: for
 * tables written once in an order and read whole many times (a training dataset's
 * partitions, each stored in shuffled order). A cursor's FETCH hands every value over
 * as text that node-postgres parses into a row, which made a 2.4M-row split cost 18 s
 * of the reader's CPU; a binary COPY's fields are decoded straight from their bytes.
 *
 * A COPY cannot be paused half-way on a connection other statements wait for, so each
 * table is read as a series of COPYs over ranges of its pages (a TID range scan, in
 * page order, which is the order the table was written in): each is read whole before
 * the next is sent, and the tables' COPYs take turns on one connection, in one
 * read-only transaction (sharedReadSession), as the cursors did. Memory is a range's
 * rows per table, however large the table.
 */
import type { Knex } from 'knex';
import { to as copyTo } from 'pg-copy-streams';
import { decodeFields, fieldDecoder, fieldEnd, fieldStart, readBinaryCopy, rowTemplate, type FieldDecoder } from './binary-copy.ts';
import { sharedReadSession } from './cursor.ts';
import { id, ids, raw, sql, toInlined, type Sql } from './sql.ts';

export interface TableRead {
  table: string;
  columns: readonly string[];
  /** Which rows (the stored order is kept). */
  where?: Sql;
}

export interface TableReadOptions {
  /** Rows per batch handed out. */
  batchSize: number;
  /** Pages per COPY (8 KiB each): what a table's reader holds at most, decoded. */
  pagesPerCopy?: number;
}

/** About 45k rows of a training dataset (about 180 bytes a row): tens of MB decoded. */
const PAGES_PER_COPY = 1024;

/** Postgres types (format_type) and the binary decoder's name for them. */
const DECODED: Record<string, string> = {
  'double precision': 'double precision',
  bigint: 'bigint',
  integer: 'integer',
  smallint: 'smallint',
  boolean: 'boolean',
  text: 'text',
  'timestamp with time zone': 'timestamptz',
};

/**
 * One stream of row batches per table, each in its stored order; undefined when a
 * column is of a type without a binary decoder here (the caller reads by cursor then).
 * Values are what the row readers give for the same columns (registry/db).
 */
export async function streamTablesInStoredOrder(knex: Knex, reads: readonly TableRead[], options: TableReadOptions): Promise<Array<AsyncGenerator<Array<Record<string, unknown>>>> | undefined> {
  const decoders: FieldDecoder[][] = [];
  for (const r of reads) {
    const types = await columnTypes(knex, r.table);
    const own: FieldDecoder[] = [];
    for (const c of r.columns) {
      const decoded = DECODED[types.get(c) ?? ''];
      if (decoded === undefined) return undefined;
      own.push(fieldDecoder(decoded));
    }
    decoders.push(own);
  }
  const step = options.pagesPerCopy ?? PAGES_PER_COPY;
  const pages: number[] = [];
  return sharedReadSession(
    knex,
    reads.length,
    undefined,
    async (client) => {
      // In the transaction: the pages of what this snapshot reads.
      for (const r of reads) {
        const { rows } = await client.query<{ pages: string }>(toInlined(knex, sql`select pg_relation_size(to_regclass(${r.table})) / current_setting('block_size')::bigint as pages`));
        pages.push(Number(rows[0]?.pages ?? 0));
      }
    },
    async function* (client, i) {
      const r = reads[i] as TableRead;
      const names = [...r.columns];
      const own = decoders[i] as FieldDecoder[];
      const template = rowTemplate(names);
      for (let page = 0; page < (pages[i] as number); page += step) {
        const range = sql`ctid >= ${`(${page},0)`}::tid and ctid < ${`(${page + step},0)`}::tid`;
        const where = r.where ? sql`${range} and (${r.where})` : range;
        const statement = toInlined(knex, sql`copy (select ${ids(names)} from ${id(r.table)} where ${where}) to stdout (format binary)`);
        const rows: Array<Record<string, unknown>> = [];
        await readBinaryCopy(client.query(copyTo(statement)), (t) => {
          const row: Record<string, unknown> = { ...template };
          decodeFields(t.buf, fieldStart(t, 0), fieldEnd(t, t.fields - 1), own, names, row, 0);
          rows.push(row);
        });
        for (let at = 0; at < rows.length; at += options.batchSize) yield rows.slice(at, at + options.batchSize);
      }
    },
  );
}

/** Each column's type, as format_type prints it. */
async function columnTypes(knex: Knex, table: string): Promise<Map<string, string>> {
  const { rows } = (await raw(
    knex,
    sql`select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
        where attrelid = to_regclass(${table}) and attnum > 0 and not attisdropped`,
  )) as { rows: Array<{ name: string; type: string }> };
  return new Map(rows.map((c) => [c.name, c.type]));
}
