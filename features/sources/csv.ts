/** CSV with a header row, streamed through csv-parse: one sequential partition. */
import fs from 'node:fs';
import { parse } from 'csv-parse';
import { parse as parseSync } from 'csv-parse/sync';
import { sourceFileError } from './files.ts';
import { BATCH_ROWS, PARSE_ERROR, type ParsedRow, type RawBatch, type Source, type SourceOptions } from './types.ts';

/** How much of a file the header is looked for in. */
const HEADER_BYTES = 1 << 16;

export function csvSource(path: string, delimiter = ',', options: Partial<SourceOptions> = {}): Source {
  return {
    columns: () => csvHeader(path, delimiter),
    partitions: async () => [{ index: 0 }],
    async *read(): AsyncIterable<RawBatch> {
      try {
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
        // The file ended inside a quoted field: it was cut off (or the quote swallowed the rest). That is a bad file, not a bad row.
        let truncated: Error | undefined;
        parser.on('skip', (err: Error & { code?: string }) => {
          if (err.code === 'CSV_QUOTE_NOT_CLOSED') truncated = err;
          // csv-parse quotes the field in some messages (", value is …"): the reason keeps only what is wrong.
          else errors.push(err.message.replace(/, value is [\s\S]*$/, ''));
        });
        let batch: ParsedRow[] = [];
        let first = 0;
        let checked = false;
        for await (const record of parser as AsyncIterable<Record<string, string>>) {
          if (!checked) {
            // The header, before any row is used.
            options.checkColumns?.(Object.keys(record));
            checked = true;
          }
          while (errors.length) batch.push({ [PARSE_ERROR]: `unparseable CSV record: ${errors.shift()}` });
          batch.push(record);
          if (batch.length >= BATCH_ROWS) {
            yield { firstRowNumber: first, rows: batch };
            first += batch.length;
            batch = [];
          }
        }
        if (truncated) throw truncated;
        while (errors.length) batch.push({ [PARSE_ERROR]: `unparseable CSV record: ${errors.shift()}` });
        if (batch.length) yield { firstRowNumber: first, rows: batch };
      } catch (err) {
        throw sourceFileError(path, 'CSV', err);
      }
    },
  };
}

/**
 * The header row of a regular file, from its first 64 KiB; undefined for an empty file or
 * something that is not a regular file (a pipe must not be read twice).
 */
async function csvHeader(path: string, delimiter: string): Promise<string[] | undefined> {
  let text: string;
  try {
    const stat = await fs.promises.stat(path);
    if (!stat.isFile()) return undefined;
    const handle = await fs.promises.open(path, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(HEADER_BYTES, stat.size));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      text = buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw sourceFileError(path, 'CSV', err);
  }
  const line = text.split(/\r?\n/).find((l) => l.trim() !== '');
  if (line === undefined) return undefined;
  try {
    const [header] = parseSync(line, { delimiter, bom: true, trim: true, relax_quotes: true, to_line: 1 }) as string[][];
    return header;
  } catch {
    // A header csv-parse cannot read: the streaming read says so.
    return undefined;
  }
}
