/**
 * Generated flights for the scaling benchmark: any number of rows drawn, with
 * replacement, from the 3M real flights of Jan–Jun 2001 (vega-datasets), so schedules,
 * routes, distances and delays keep their real joint distribution and only the density
 * grows (10M rows put about three times as many flights in each airport hour).
 *
 * Row i of a generated file is real row hash(i) mod 3M: the same size gives the same
 * file on every machine. Files are written in 250k-row row groups (the ingest's
 * partitions) to a cache outside the repository, once per size.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { fileWriter, ParquetWriter, schemaFromColumnData } from 'hyparquet-writer';
import { mix32 } from '../core/hash.ts';
import { FLIGHTS_3M_PARQUET } from '../examples/flights/data.ts';

export const GENERATED_FLIGHTS_DIR = path.join(os.homedir(), '.cache', 'fti', 'bench-flights');
const ROW_GROUP = 250_000;
/** Bump when the drawing rule changes: a cached file of the old rule is then not reused. */
const GENERATOR_VERSION = 1;

/** The real flights, column by column (dates in ms, origin and destination as dictionary codes). */
interface RealFlights {
  rows: number;
  date: Float64Array;
  delay: Float64Array;
  distance: Float64Array;
  origin: Uint16Array;
  destination: Uint16Array;
  airports: string[];
}

let real: Promise<RealFlights> | undefined;

async function readReal(): Promise<RealFlights> {
  const file = await asyncBufferFromFile(FLIGHTS_3M_PARQUET);
  const metadata = await parquetMetadataAsync(file);
  const rows = Number(metadata.num_rows);
  const out: RealFlights = { rows, date: new Float64Array(rows), delay: new Float64Array(rows), distance: new Float64Array(rows), origin: new Uint16Array(rows), destination: new Uint16Array(rows), airports: [] };
  const codes = new Map<string, number>();
  const code = (a: unknown) => {
    const key = String(a);
    let c = codes.get(key);
    if (c === undefined) {
      c = out.airports.length;
      codes.set(key, c);
      out.airports.push(key);
    }
    return c;
  };
  const num = (v: unknown) => (v === null || v === undefined ? Number.NaN : Number(v));
  let at = 0;
  for (let start = 0; start < rows; start += ROW_GROUP) {
    await parquetRead({
      file,
      metadata,
      compressors,
      columns: ['date', 'delay', 'distance', 'origin', 'destination'],
      rowStart: start,
      rowEnd: Math.min(rows, start + ROW_GROUP),
      rowFormat: 'array',
      onComplete: (data) => {
        for (const row of data as unknown[][]) {
          const [date, delay, distance, origin, destination] = row;
          out.date[at] = date instanceof Date ? date.getTime() : Number.NaN;
          out.delay[at] = num(delay);
          out.distance[at] = num(distance);
          out.origin[at] = code(origin);
          out.destination[at] = code(destination);
          at++;
        }
      },
    });
  }
  return out;
}

/** The path of a Parquet file of `rows` generated flights (written on first use). */
export async function generatedFlights(rows: number): Promise<string> {
  fs.mkdirSync(GENERATED_FLIGHTS_DIR, { recursive: true });
  const file = path.join(GENERATED_FLIGHTS_DIR, `flights-${rows}-g${GENERATOR_VERSION}.parquet`);
  if (fs.existsSync(file)) return file;
  const source = await (real ??= readReal());
  const partial = `${file}.${process.pid}.partial`;
  const writer = new ParquetWriter({ writer: fileWriter(partial), schema: [] });
  for (let start = 0; start < rows; start += ROW_GROUP) {
    const n = Math.min(ROW_GROUP, rows - start);
    const pick = new Uint32Array(n);
    for (let i = 0; i < n; i++) pick[i] = mix32(Math.imul(start + i, 0x9e3779b1) ^ 0x5bd1e995) % source.rows;
    const opt = (v: number) => (Number.isNaN(v) ? null : v);
    const columnData = [
      { name: 'date', data: Array.from(pick, (r) => new Date(source.date[r] as number)), type: 'TIMESTAMP' as const },
      { name: 'delay', data: Array.from(pick, (r) => opt(source.delay[r] as number)), type: 'DOUBLE' as const },
      { name: 'distance', data: Array.from(pick, (r) => opt(source.distance[r] as number)), type: 'DOUBLE' as const },
      { name: 'origin', data: Array.from(pick, (r) => source.airports[source.origin[r] as number] as string), type: 'STRING' as const },
      { name: 'destination', data: Array.from(pick, (r) => source.airports[source.destination[r] as number] as string), type: 'STRING' as const },
    ];
    if (start === 0) writer.schema = schemaFromColumnData({ columnData });
    await writer.write({ columnData, rowGroupSize: ROW_GROUP });
  }
  await writer.finish();
  fs.renameSync(partial, file);
  return file;
}
