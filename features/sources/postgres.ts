/**
 * A SQL query as a source; `$1` and `$2` are bound to the window's start and end
 * (null when open). Streamed through a server-side cursor.
 */
import { BATCH_ROWS, type QueryRows, type RawBatch, type Source, type TimeWindow } from './types.ts';

export function postgresSource(queryRows: QueryRows, query: string): Source {
  return {
    // A query's columns are known only once it runs.
    columns: async () => undefined,
    partitions: async () => [{ index: 0 }],
    async *read(_partition, window: TimeWindow): AsyncIterable<RawBatch> {
      const params = /\$2\b/.test(query) ? [window.start ?? null, window.end ?? null] : /\$1\b/.test(query) ? [window.start ?? null] : [];
      let first = 0;
      for await (const rows of queryRows(query, params, BATCH_ROWS)) {
        yield { firstRowNumber: first, rows };
        first += rows.length;
      }
    },
  };
}
