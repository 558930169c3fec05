/** CSV with a header row, streamed through csv-parse: one sequential partition. */
import fs from 'node:fs';
import { parse } from 'csv-parse';
import { BATCH_ROWS, PARSE_ERROR, type ParsedRow, type RawBatch, type Source } from './types.ts';

export function csvSource(path: string, delimiter = ','): Source {
  return {
    partitions: async () => [{ index: 0 }],
    async *read(): AsyncIterable<RawBatch> {
      const parser = fs.createReadStream(path).pipe(
        parse({
          columns: true,
          delimiter,
          bom: true,
          trim: true,
          skip_empty_lines: true,
          // A malformed record becomes a rejected row, not a failed run.
          skip_records_with_error: true,
        }),
      );
      const errors: string[] = [];
      parser.on('skip', (err: Error) => errors.push(err.message));
      let batch: ParsedRow[] = [];
      let first = 0;
      for await (const record of parser as AsyncIterable<Record<string, string>>) {
        while (errors.length) batch.push({ [PARSE_ERROR]: `unparseable CSV record: ${errors.shift()}` });
        batch.push(record);
        if (batch.length >= BATCH_ROWS) {
          yield { firstRowNumber: first, rows: batch };
          first += batch.length;
          batch = [];
        }
      }
      while (errors.length) batch.push({ [PARSE_ERROR]: `unparseable CSV record: ${errors.shift()}` });
      if (batch.length) yield { firstRowNumber: first, rows: batch };
    },
  };
}
