import type { RawRow } from '../definitions.ts';
import type { TimeZone } from '../timestamps.ts';

/** A slice of a source that one activity reads: the unit of fan-out and of retry. */
export interface SourcePartition {
  index: number;
  /** First and one-past-last source row numbers, where the source knows them. */
  rowStart?: number;
  rowEnd?: number;
}

/** A row that could not even be parsed; it is rejected with this reason. */
export const PARSE_ERROR = Symbol('parseError');
export type ParsedRow = RawRow & { [PARSE_ERROR]?: string };

/** Consecutive source rows: row i has row number `firstRowNumber + i`. */
export interface RawBatch {
  firstRowNumber: number;
  rows: ParsedRow[];
}

export interface TimeWindow {
  start?: Date;
  end?: Date;
}

export interface Source {
  /**
   * The source's columns, from its header, schema or first line, without reading its rows;
   * undefined when that cannot be known without consuming it (a pipe, a query) or it is empty.
   */
  columns(): Promise<string[] | undefined>;
  /** The partitions to read (one for sources that stream sequentially). */
  partitions(window: TimeWindow, sizing?: PartitionSizing): Promise<SourcePartition[]>;
  read(partition: SourcePartition, window: TimeWindow): AsyncIterable<RawBatch>;
  /**
   * The span [start, end) of the time column within the window, where the source knows it
   * without reading a row (Parquet's statistics). A hint (the staging table is laid out by
   * it), not a bound: rows may fall outside it.
   */
  timeSpan?(window: TimeWindow): Promise<TimeSpan | undefined>;
}

export interface TimeSpan {
  start: Date;
  end: Date;
}

/** A span cut to a window's bounds (either may be open); undefined when nothing is left. */
export function clipSpan(span: TimeSpan, window: TimeWindow): TimeSpan | undefined {
  const start = window.start && window.start > span.start ? window.start : span.start;
  const end = window.end && window.end < span.end ? window.end : span.end;
  return start < end ? { start, end } : undefined;
}

export const BATCH_ROWS = 20_000;

/**
 * How a splittable source (Parquet) is cut into partitions: whole row groups, about
 * `rows` rows each, and never more than `max` partitions (the target grows instead), so
 * a file of 10,000 small row groups is a handful of activities, not 10,000.
 */
export interface PartitionSizing {
  rows: number;
  max: number;
}

export const DEFAULT_PARTITION_SIZING: PartitionSizing = { rows: 250_000, max: 256 };

/** What every source is opened with. */
export interface SourceOptions {
  /** The zone of timestamps the format itself decodes without one (Parquet TIMESTAMP without isAdjustedToUTC). */
  timeZone: TimeZone;
  /** Called with the source's columns before its first row is read; throws to refuse them. */
  checkColumns?: (found: string[]) => void;
}

/** Runs a source query in the store and streams its rows in batches (the feature store's sourceRows). */
export type QueryRows = (query: string, params: unknown[], batchSize: number) => AsyncIterable<Array<Record<string, unknown>>>;
