/**
 * Parquet (zstd, snappy, gzip, brotli, lz4 via hyparquet-compressors), read one row
 * group at a time: a partition is a run of row groups, so memory is bounded by the
 * row-group size whatever the file size. With `timeColumn`, row groups whose
 * min/max statistics fall outside the window are skipped.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, type FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { BATCH_ROWS, type RawBatch, type Source, type SourcePartition, type TimeWindow } from './types.ts';

interface RowGroupInfo {
  index: number;
  rowStart: number;
  rowEnd: number;
  minTime?: number;
  maxTime?: number;
}

export function parquetSource(path: string, timeColumn?: string, rowGroupsPerPartition = 1): Source {
  let opened: Promise<{ file: Awaited<ReturnType<typeof asyncBufferFromFile>>; metadata: FileMetaData; groups: RowGroupInfo[] }> | undefined;
  const open = () =>
    (opened ??= (async () => {
      const file = await asyncBufferFromFile(path);
      const metadata = await parquetMetadataAsync(file);
      let rowStart = 0;
      const groups = metadata.row_groups.map((g, index) => {
        const rows = Number(g.num_rows);
        const info: RowGroupInfo = { index, rowStart, rowEnd: rowStart + rows, ...timeRange(g.columns, timeColumn) };
        rowStart += rows;
        return info;
      });
      return { file, metadata, groups };
    })());

  return {
    async partitions(window: TimeWindow): Promise<SourcePartition[]> {
      const { groups } = await open();
      const wanted = groups.filter((g) => overlaps(g, window));
      const partitions: SourcePartition[] = [];
      for (let i = 0; i < wanted.length; i += rowGroupsPerPartition) {
        const run = wanted.slice(i, i + rowGroupsPerPartition);
        partitions.push({ index: partitions.length, rowStart: run[0]?.rowStart, rowEnd: run.at(-1)?.rowEnd });
      }
      return partitions;
    },

    async *read(partition: SourcePartition): AsyncIterable<RawBatch> {
      const { file, metadata, groups } = await open();
      const start = partition.rowStart ?? 0;
      const end = partition.rowEnd ?? groups.at(-1)?.rowEnd ?? 0;
      const columns = metadata.schema.slice(1).map((s) => s.name);
      for (const group of groups) {
        if (group.rowEnd <= start || group.rowStart >= end) continue;
        const from = Math.max(start, group.rowStart);
        const to = Math.min(end, group.rowEnd);
        let data: unknown[][] = [];
        await parquetRead({ file, metadata, compressors, rowStart: from, rowEnd: to, rowFormat: 'array', onComplete: (rows) => (data = rows as unknown[][]) });
        for (let offset = 0; offset < data.length; offset += BATCH_ROWS) {
          const slice = data.slice(offset, offset + BATCH_ROWS);
          yield { firstRowNumber: from + offset, rows: slice.map((values) => toRow(columns, values)) };
        }
      }
    },
  };
}

function toRow(columns: string[], values: unknown[]): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  for (let i = 0; i < columns.length; i++) {
    const v = values[i];
    // INT64 arrives as BigInt; numbers are what transforms expect.
    row[columns[i] as string] = typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  return row;
}

/** Row-group min/max of a TIMESTAMP column, in epoch ms, from the column statistics. */
function timeRange(columns: FileMetaData['row_groups'][number]['columns'], timeColumn: string | undefined): { minTime?: number; maxTime?: number } {
  if (!timeColumn) return {};
  const column = columns.find((c) => c.meta_data?.path_in_schema.join('.') === timeColumn);
  const stats = column?.meta_data?.statistics;
  const min = toEpochMs(stats?.min_value ?? stats?.min);
  const max = toEpochMs(stats?.max_value ?? stats?.max);
  return min !== undefined && max !== undefined ? { minTime: min, maxTime: max } : {};
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
