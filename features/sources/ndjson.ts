/**
 * Newline-delimited JSON, streamed line by line: one sequential partition. Its columns are
 * the keys of its first object (there is no header), so the first line must carry every
 * column a definition reads (null for a missing value).
 */
import fs from 'node:fs';
import readline from 'node:readline';
import { invalid } from '../../core/errors.ts';
import { sourceFileError } from './files.ts';
import { BATCH_ROWS, PARSE_ERROR, type ParsedRow, type RawBatch, type Source, type SourceOptions } from './types.ts';

/** How far into a file its first line is looked for. */
const FIRST_LINE_BYTES = 1 << 20;

export function ndjsonSource(path: string, options: Partial<SourceOptions> = {}): Source {
  const firstObjectColumns = (row: ParsedRow, lineNumber: number): string[] => {
    if (row[PARSE_ERROR] !== undefined) throw invalid(`source file ${path} is not NDJSON: line ${lineNumber} is not a JSON object (one object per line expected)`, { path });
    return Object.keys(row);
  };
  return {
    async columns() {
      if (!options.checkColumns) return undefined;
      const first = await firstLine(path);
      return first === undefined ? undefined : firstObjectColumns(parseLine(first.text), first.lineNumber);
    },
    partitions: async () => [{ index: 0 }],
    async *read(): AsyncIterable<RawBatch> {
      try {
        const lines = readline.createInterface({ input: fs.createReadStream(path, 'utf8'), crlfDelay: Infinity });
        let batch: ParsedRow[] = [];
        let first = 0;
        let lineNumber = 0;
        let checked = false;
        for await (const line of lines) {
          lineNumber++;
          if (!line.trim()) continue;
          const row = parseLine(line);
          if (!checked && options.checkColumns) {
            // The first object's keys, before any row is used.
            options.checkColumns(firstObjectColumns(row, lineNumber));
          }
          checked = true;
          batch.push(row);
          if (batch.length >= BATCH_ROWS) {
            yield { firstRowNumber: first, rows: batch };
            first += batch.length;
            batch = [];
          }
        }
        if (batch.length) yield { firstRowNumber: first, rows: batch };
      } catch (err) {
        throw sourceFileError(path, 'NDJSON', err);
      }
    },
  };
}

function parseLine(line: string): ParsedRow {
  try {
    const value: unknown = JSON.parse(line);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as ParsedRow;
    return { [PARSE_ERROR]: 'NDJSON line is not a JSON object' };
  } catch (err) {
    // V8 quotes a piece of the line in its message ("root:x:0:0"... is not valid JSON): keep only what is wrong.
    const message = (err as Error).message.replace(/,\s*(?:\.\.\.)?"[\s\S]*?"(?:\.\.\.)?\s+is not valid JSON$/, ' (not valid JSON)');
    return { [PARSE_ERROR]: `unparseable NDJSON line: ${message}` };
  }
}

/** The first non-empty line of a regular file (undefined: empty, or not a regular file: a pipe must not be read twice). */
async function firstLine(path: string): Promise<{ text: string; lineNumber: number } | undefined> {
  let text: string;
  let whole: boolean;
  try {
    const stat = await fs.promises.stat(path);
    if (!stat.isFile()) return undefined;
    const handle = await fs.promises.open(path, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(FIRST_LINE_BYTES, stat.size));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      text = buffer.subarray(0, bytesRead).toString('utf8');
      whole = bytesRead >= stat.size;
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw sourceFileError(path, 'NDJSON', err);
  }
  const lines = text.split('\n');
  const index = lines.findIndex((l) => l.trim() !== '');
  // None, or a first line longer than what was read: the streaming read checks it.
  if (index < 0 || (index === lines.length - 1 && !whole)) return undefined;
  return { text: lines[index] as string, lineNumber: index + 1 };
}
