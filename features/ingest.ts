/**
 * The per-row work of ingestion, between a source and COPY: type the raw columns the
 * definition declares (`sourceColumns`), transform, type every feature, keep rows inside
 * the time window, and encode them as binary COPY data (staged-rows.ts). Timestamps
 * without a zone are read in the definition's `timeZone`. A row that cannot be parsed,
 * typed or transformed is rejected with its reasons; it is never dropped silently.
 */
import { durationMs } from '../core/duration.ts';
import type { FeatureGroupDefinition } from './definitions.ts';
import { coerce, type FeatureValue } from './schema.ts';
import { PARSE_ERROR, type RawBatch, type TimeWindow } from './sources/types.ts';
import { StagedRowWriter } from './staged-rows.ts';

/** A source row that was not staged, with why (kept in feature_rejects). */
export interface FeatureReject {
  rowNumber: number;
  reasons: string[];
  row: Record<string, unknown>;
}

export interface IngestCounters {
  /** Rows inside the window (or not placeable in time because they were rejected). */
  rowsIn: number;
  rowsStaged: number;
  rowsRejected: number;
  /** Rows read but outside the window. */
  rowsOutsideWindow: number;
}

/**
 * Yields binary COPY chunks of the staged rows (feature columns in definition order,
 * then _row_number and _available_at: when the row became known, by the definition's
 * availability); rejects are handed to `onRejects` batch by batch, awaited before
 * reading on.
 */
export async function* encodeRows(
  def: FeatureGroupDefinition,
  batches: AsyncIterable<RawBatch>,
  window: TimeWindow,
  counters: IngestCounters,
  onRejects: (rejects: FeatureReject[]) => Promise<void>,
  onBatch: () => void = () => {},
): AsyncGenerator<Buffer> {
  const columns = def.columns;
  const zone = def.timeZone;
  // The raw columns typed before the transform sees them, whatever the file format.
  const rawColumns = def.sourceColumns ? Object.entries(def.sourceColumns) : [];
  const required = new Set([...def.entityKeys, def.eventTime]);
  const eventTimeIndex = columns.findIndex((c) => c.name === def.eventTime);
  const availability = def.availability;
  const lagMs = availability && 'lag' in availability ? durationMs(availability.lag) : 0;
  const availableIndex = availability && 'column' in availability ? columns.findIndex((c) => c.name === availability.column) : -1;
  const availableName = columns[availableIndex]?.name ?? 'availability';
  const startMs = window.start?.getTime() ?? -Infinity;
  const endMs = window.end?.getTime() ?? Infinity;
  const values: FeatureValue[] = new Array(columns.length);
  const writer = new StagedRowWriter(columns);

  for await (const batch of batches) {
    const rejects: FeatureReject[] = [];
    for (let i = 0; i < batch.rows.length; i++) {
      const raw = batch.rows[i] as RawBatch['rows'][number];
      const rowNumber = batch.firstRowNumber + i;
      const parseError = raw[PARSE_ERROR];
      if (parseError !== undefined) {
        counters.rowsIn++;
        rejects.push({ rowNumber, reasons: [`row: ${parseError}`], row: {} });
        continue;
      }
      let rawReasons: string[] | undefined;
      for (const [name, type] of rawColumns) {
        const typed = coerce(raw[name], type, zone);
        if (typed.ok) raw[name] = typed.value;
        else (rawReasons ??= []).push(`${name}: ${typed.reason}`);
      }
      if (rawReasons) {
        counters.rowsIn++;
        rejects.push({ rowNumber, reasons: rawReasons, row: jsonSafe(raw) });
        continue;
      }
      let row: Record<string, unknown>;
      try {
        row = def.transform ? def.transform(raw, { rowNumber }) : raw;
      } catch (err) {
        counters.rowsIn++;
        rejects.push({ rowNumber, reasons: [`row: transform failed: ${(err as Error).message}`], row: jsonSafe(raw) });
        continue;
      }
      let reasons: string[] | undefined;
      for (let c = 0; c < columns.length; c++) {
        const column = columns[c] as (typeof columns)[number];
        const typed = coerce(row[column.name], column.type, zone);
        if (!typed.ok) {
          (reasons ??= []).push(`${column.name}: ${typed.reason}`);
          values[c] = null;
        } else {
          if (typed.value === null && required.has(column.name)) (reasons ??= []).push(`${column.name}: must not be null (${column.name === def.eventTime ? 'event time' : 'entity key'})`);
          values[c] = typed.value;
        }
      }
      const time = values[eventTimeIndex];
      if (time instanceof Date) {
        const t = time.getTime();
        if (t < startMs || t >= endMs) {
          counters.rowsOutsideWindow++;
          continue;
        }
      }
      counters.rowsIn++;
      let availableAt: Date | undefined;
      if (time instanceof Date) {
        const known = availableIndex >= 0 ? values[availableIndex] : new Date(time.getTime() + lagMs);
        // Known before it happened would put the row into joins at times it did not exist yet.
        if (!(known instanceof Date)) (reasons ??= []).push(`${availableName}: must not be null (when the row became known)`);
        else if (known.getTime() < time.getTime()) (reasons ??= []).push(`${availableName}: ${known.toISOString()} is before the event time ${time.toISOString()}`);
        else availableAt = known;
      }
      if (reasons || !availableAt) {
        rejects.push({ rowNumber, reasons: reasons ?? ['row: no event time'], row: jsonSafe(row) });
        continue;
      }
      writer.row(values, rowNumber, availableAt);
      counters.rowsStaged++;
    }
    if (rejects.length) {
      counters.rowsRejected += rejects.length;
      await onRejects(rejects);
    }
    onBatch();
    yield* writer.take();
  }
  yield* writer.end();
}

/** A row as JSON can keep it (bigints as strings, dates as ISO text). */
function jsonSafe(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    out[k] = typeof v === 'bigint' ? v.toString() : v instanceof Date ? (Number.isFinite(v.getTime()) ? v.toISOString() : String(v)) : v;
  }
  return out;
}
