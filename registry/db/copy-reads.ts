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
import { binaryDecoder, decodeFields, fieldEnd, fieldStart, rowTemplate, type FieldDecoder } from './binary-copy.ts';
import { binaryCopyOut } from './copy-out.ts';
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

/**
 * One stream of row batches per table, each in its stored order; undefined when a
 * column is of a type without a binary decoder here (the caller reads by cursor then).
 * Values are what the row readers give for the same columns (registry/db).
 */
export async function streamTablesInStoredOrder(knex: Knex, reads: readonly TableRead[], options: TableReadOptions): Promise<Array<AsyncGenerator<Array<Record<string, unknown>>>> | undefined> {
  const types = await columnTypes(knex, reads.map((r) => r.table));
  const decoders: FieldDecoder[][] = [];
  for (const r of reads) {
    const own: FieldDecoder[] = [];
    for (const c of r.columns) {
      const decoder = binaryDecoder(types.get(r.table)?.get(c) ?? '');
      if (!decoder) return undefined;
      own.push(decoder);
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
      const { rows } = await client.query<{ pages: string }>(
        `select pg_relation_size(to_regclass(t.name)) / current_setting('block_size')::bigint as pages from unnest($1::text[]) with ordinality t(name, i) order by t.i`,
        [reads.map((r) => r.table)],
      );
      pages.push(...rows.map((r) => Number(r.pages)));
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
        await binaryCopyOut(client, statement, (t) => {
          const row: Record<string, unknown> = { ...template };
          decodeFields(t.buf, fieldStart(t, 0), fieldEnd(t, t.fields - 1), own, names, row, 0);
          rows.push(row);
        });
        for (let at = 0; at < rows.length; at += options.batchSize) yield rows.slice(at, at + options.batchSize);
      }
    },
  );
}

/** Each table's columns and their types, as format_type prints them (one catalog read for all). */
async function columnTypes(knex: Knex, tables: readonly string[]): Promise<Map<string, Map<string, string>>> {
  const { rows } = (await raw(
    knex,
    sql`select t.name as table, a.attname as name, format_type(a.atttypid, a.atttypmod) as type
        from unnest(${[...tables]}::text[]) t(name) join pg_attribute a on a.attrelid = to_regclass(t.name)
        where a.attnum > 0 and not a.attisdropped`,
  )) as { rows: Array<{ table: string; name: string; type: string }> };
  const out = new Map<string, Map<string, string>>();
  for (const c of rows) {
    const own = out.get(c.table) ?? new Map<string, string>();
    own.set(c.name, c.type);
    out.set(c.table, own);
  }
  return out;
}
