/**
 * Parquet (zstd, snappy, gzip, brotli, lz4 via hyparquet-compressors), read one row
 * group at a time: a partition is a run of row groups, so memory is bounded by the
 * row-group size whatever the file size. With `timeColumn`, row groups whose
 * min/max statistics fall outside the window are skipped.
 *
 * A TIMESTAMP column without isAdjustedToUTC holds wall-clock times: they are read in the
 * definition's zone (UTC unless it says otherwise). A truncated or corrupt file fails at
 * once, naming the file.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, type FileMetaData, type SchemaElement } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { UTC, wallClockToInstant } from '../timestamps.ts';
import { sourceFileError } from './files.ts';
import { BATCH_ROWS, clipSpan, type RawBatch, type Source, type PartitionSizing, type SourceOptions, type SourcePartition, type TimeSpan, type TimeWindow, DEFAULT_PARTITION_SIZING } from './types.ts';

interface RowGroupInfo {
  index: number;
  rowStart: number;
  rowEnd: number;
  minTime?: number;
  maxTime?: number;
}

/** How far a zone's offset can move a wall-clock time (statistics are widened by it outside UTC). */
const MAX_ZONE_SHIFT_MS = 26 * 3600_000;

export function parquetSource(path: string, timeColumn?: string, options: Partial<SourceOptions> = {}): Source {
  const { timeZone = UTC } = options;
  let opened: Promise<{ file: Awaited<ReturnType<typeof asyncBufferFromFile>>; metadata: FileMetaData; columns: string[]; zoneless: Set<string>; groups: RowGroupInfo[] }> | undefined;
  const open = () =>
    (opened ??= (async () => {
      try {
        const file = await asyncBufferFromFile(path);
        const metadata = await parquetMetadataAsync(file);
        const top = topLevel(metadata.schema);
        const zoneless = new Set(top.filter((s) => s.logical_type?.type === 'TIMESTAMP' && s.logical_type.isAdjustedToUTC === false).map((s) => s.name));
        const shift = timeZone !== UTC && timeColumn !== undefined && zoneless.has(timeColumn);
        let rowStart = 0;
        const groups = metadata.row_groups.map((g, index) => {
          const rows = Number(g.num_rows);
          const info: RowGroupInfo = { index, rowStart, rowEnd: rowStart + rows, ...timeRange(g.columns, timeColumn, shift) };
          rowStart += rows;
          return info;
        });
        return { file, metadata, columns: top.map((s) => s.name), zoneless, groups };
      } catch (err) {
        throw sourceFileError(path, 'Parquet', err);
      }
    })());

  return {
    async columns() {
      return (await open()).columns;
    },

    async partitions(window: TimeWindow, sizing: PartitionSizing = DEFAULT_PARTITION_SIZING): Promise<SourcePartition[]> {
      const { groups } = await open();
      const wanted = groups.filter((g) => overlaps(g, window));
      const total = wanted.reduce((sum, g) => sum + (g.rowEnd - g.rowStart), 0);
      // Each partition but the last holds at least `target` rows: at most `max` of them.
      const target = Math.max(sizing.rows, Math.ceil(total / Math.max(1, sizing.max - 1)));
      const partitions: SourcePartition[] = [];
      let first: RowGroupInfo | undefined;
      let rows = 0;
      for (const [i, group] of wanted.entries()) {
        first ??= group;
        rows += group.rowEnd - group.rowStart;
        if (rows >= target || i === wanted.length - 1) {
          // The range may span row groups outside the window: read() skips them.
          partitions.push({ index: partitions.length, rowStart: first.rowStart, rowEnd: group.rowEnd });
          first = undefined;
          rows = 0;
        }
      }
      return partitions;
    },

    async timeSpan(window: TimeWindow): Promise<TimeSpan | undefined> {
      const wanted = (await open()).groups.filter((g) => overlaps(g, window));
      let [min, max] = [Infinity, -Infinity];
      for (const g of wanted) {
        if (g.minTime === undefined || g.maxTime === undefined) return undefined;
        [min, max] = [Math.min(min, g.minTime), Math.max(max, g.maxTime)];
      }
      return min > max ? undefined : clipSpan({ start: new Date(min), end: new Date(max + 1) }, window);
    },

    async *read(partition: SourcePartition, window: TimeWindow): AsyncIterable<RawBatch> {
      const { file, metadata, columns, zoneless, groups } = await open();
      options.checkColumns?.(columns);
      // Zone-less timestamps are decoded as if UTC; outside UTC they move to the definition's zone.
      const shifted = timeZone === UTC ? [] : columns.flatMap((c, i) => (zoneless.has(c) ? [i] : []));
      const start = partition.rowStart ?? 0;
      const end = partition.rowEnd ?? groups.at(-1)?.rowEnd ?? 0;
      for (const group of groups) {
        if (group.rowEnd <= start || group.rowStart >= end || !overlaps(group, window)) continue;
        const from = Math.max(start, group.rowStart);
        const to = Math.min(end, group.rowEnd);
        let data: unknown[][] = [];
        try {
          await parquetRead({ file, metadata, compressors, rowStart: from, rowEnd: to, rowFormat: 'array', onComplete: (rows) => (data = rows as unknown[][]) });
        } catch (err) {
          throw sourceFileError(path, 'Parquet', err);
        }
        for (let offset = 0; offset < data.length; offset += BATCH_ROWS) {
          const slice = data.slice(offset, offset + BATCH_ROWS);
          yield { firstRowNumber: from + offset, rows: slice.map((values) => toRow(columns, values, shifted, timeZone)) };
        }
      }
    },
  };
}

/** The columns of the file (the root's children), not the leaves of nested ones. */
function topLevel(schema: SchemaElement[]): SchemaElement[] {
  const out: SchemaElement[] = [];
  let i = 1;
  const skip = (): void => {
    const element = schema[i++];
    for (let c = 0; c < (element?.num_children ?? 0); c++) skip();
  };
  while (i < schema.length) {
    out.push(schema[i] as SchemaElement);
    skip();
  }
  return out;
}

function toRow(columns: string[], values: unknown[], shifted: number[], timeZone: string): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  for (let i = 0; i < columns.length; i++) {
    const v = values[i];
    // INT64 arrives as BigInt; numbers are what transforms expect.
    row[columns[i] as string] = typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  for (const i of shifted) {
    const name = columns[i] as string;
    const v = row[name];
    if (v instanceof Date) row[name] = new Date(wallClockToInstant(v.getTime(), timeZone));
  }
  return row;
}

/** Row-group min/max of a TIMESTAMP column, in epoch ms, from the column statistics (widened when its wall-clock times move to a zone). */
function timeRange(columns: FileMetaData['row_groups'][number]['columns'], timeColumn: string | undefined, shift: boolean): { minTime?: number; maxTime?: number } {
  if (!timeColumn) return {};
  const column = columns.find((c) => c.meta_data?.path_in_schema.join('.') === timeColumn);
  const stats = column?.meta_data?.statistics;
  const min = toEpochMs(stats?.min_value ?? stats?.min);
  const max = toEpochMs(stats?.max_value ?? stats?.max);
  if (min === undefined || max === undefined) return {};
  return shift ? { minTime: min - MAX_ZONE_SHIFT_MS, maxTime: max + MAX_ZONE_SHIFT_MS } : { minTime: min, maxTime: max };
}

function toEpochMs(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  return undefined;
}

function overlaps(group: RowGroupInfo, window: TimeWindow): boolean {
  if (group.minTime === undefined || group.maxTime === undefined) return true;
  if (window.start && group.maxTime < window.start.getTime()) return false;
  if (window.end && group.minTime >= window.end.getTime()) return false;
  return true;
}
