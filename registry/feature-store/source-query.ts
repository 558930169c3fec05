/**
 * A definition's own SQL source, streamed through a read-only cursor over the extended
 * protocol (registry/db/cursor.ts). A query Postgres refuses for what it is (syntax, a
 * missing table or permission, several statements, a write in the read-only transaction, a
 * data error) fails the run at once as FtiInvalidInput: it is code, and retrying it would
 * fail the same way. Connection and resource errors stay plain, so they are retried.
 */
import type { Knex } from 'knex';
import { invalid } from '../../core/errors.ts';
import { pgErrorCode, streamQuery } from '../db/index.ts';

export interface SourceQueryOptions {
  /** Parses `timestamp without time zone` and `date` text (a definition's zone). */
  zonelessTimestamp?: (text: string) => unknown;
}

/** SQLSTATE classes that depend on the query, not on the moment it ran. */
const DETERMINISTIC = new Set(['0A', '21', '22', '25', '2F', '34', '38', '39', '3F', '42', '44', 'P0']);

export async function* sourceQueryRows(knex: Knex, query: string, params: unknown[], batchSize: number, options: SourceQueryOptions = {}): AsyncGenerator<Array<Record<string, unknown>>> {
  try {
    yield* streamQuery<Record<string, unknown>>(knex, query, params, batchSize, { zonelessTimestamp: options.zonelessTimestamp });
  } catch (err) {
    const code = pgErrorCode(err);
    if (code && DETERMINISTIC.has(code.slice(0, 2))) {
      const message = err instanceof Error ? err.message : String(err);
      throw invalid(
        `the definition's source query was refused by Postgres: ${message.length > 200 ? `${message.slice(0, 199)}…` : message} (SQLSTATE ${code}); a source query is one SELECT, run in a read-only transaction`,
        { code },
      );
    }
    throw err;
  }
}
