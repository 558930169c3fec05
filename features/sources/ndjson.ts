/** Newline-delimited JSON, streamed line by line: one sequential partition. */
import fs from 'node:fs';
import readline from 'node:readline';
import { BATCH_ROWS, PARSE_ERROR, type ParsedRow, type RawBatch, type Source } from './types.ts';

export function ndjsonSource(path: string): Source {
  return {
    partitions: async () => [{ index: 0 }],
    async *read(): AsyncIterable<RawBatch> {
      const lines = readline.createInterface({ input: fs.createReadStream(path, 'utf8'), crlfDelay: Infinity });
      let batch: ParsedRow[] = [];
      let first = 0;
      for await (const line of lines) {
        if (!line.trim()) continue;
        batch.push(parseLine(line));
        if (batch.length >= BATCH_ROWS) {
          yield { firstRowNumber: first, rows: batch };
          first += batch.length;
          batch = [];
        }
      }
      if (batch.length) yield { firstRowNumber: first, rows: batch };
    },
  };
}

function parseLine(line: string): ParsedRow {
  try {
    const value: unknown = JSON.parse(line);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as ParsedRow;
    return { [PARSE_ERROR]: 'NDJSON line is not a JSON object' };
  } catch (err) {
    return { [PARSE_ERROR]: `unparseable NDJSON line: ${(err as Error).message}` };
  }
}
