/**
 * A batch of rows held column by column: what batch inference reads, scores and
 * writes. Numbers (floats, ints, booleans as 0/1, timestamps as microseconds since
 * 1970) sit in typed arrays with a null mask, text in an array of strings; so a
 * partition's half a million rows are never half a million objects for the garbage
 * collector to trace (that, decoding and encoding row objects, was most of a
 * partition's JavaScript time). Rows read by a SQL cursor, already objects, come as
 * `value` columns over them (columnsFromRows).
 */

/** What a number column holds: its values' type as Postgres had it. */
export type NumberColumnType = 'float' | 'int' | 'bool' | 'time';

export interface NumberColumn {
  type: NumberColumnType;
  /** Row i's value (meaningless where nulls[i] is 1); a bool is 1 or 0, a time microseconds since 1970. */
  values: Float64Array;
  /** 1 where row i is null. */
  nulls: Uint8Array;
}

export interface TextColumn {
  type: 'text';
  values: Array<string | null>;
}

/** Values as a row object had them, of any type. */
export interface ValueColumn {
  type: 'value';
  values: readonly unknown[];
}

export type Column = NumberColumn | TextColumn | ValueColumn;

export interface ColumnBatch {
  size: number;
  /** By column name, in the order the rows' fields come. */
  columns: ReadonlyMap<string, Column>;
  /**
   * Hands the batch's number arrays back to whoever made them, for the next batch
   * (ColumnArrays); the batch must not be read after. Its last reader calls it, when
   * there is one; a batch never released is collected as any other.
   */
  release?: () => void;
}

/**
 * Number columns' arrays kept for reuse, so that a stream of batches does not allocate
 * two arrays per column per batch. Why: typed arrays live outside the JavaScript heap,
 * and V8 collects garbage to keep that memory in check; batch inference's reader threads
 * made about 1.2 MB of them per 8,192-row batch, handed each batch's to the main thread
 * (another isolate) and so collected garbage every few batches. Taken arrays are the
 * asked length; their null masks are cleared, their values are whatever was written last.
 */
export class ColumnArrays {
  private readonly free: Array<{ values: Float64Array; nulls: Uint8Array }> = [];

  /** `limit`: pairs kept at most; more are left to the collector. */
  constructor(private readonly limit = 256) {}

  /** A values array and a cleared null mask of `size` rows. */
  take(size: number): { values: Float64Array; nulls: Uint8Array } {
    for (let i = this.free.length - 1; i >= 0; i--) {
      const pair = this.free[i] as { values: Float64Array; nulls: Uint8Array };
      if (pair.values.length !== size) continue;
      this.free.splice(i, 1);
      pair.nulls.fill(0);
      return pair;
    }
    return { values: new Float64Array(size), nulls: new Uint8Array(size) };
  }

  /** Keeps a column's arrays for a later take (each a whole buffer of its own, as take made them). */
  give(values: Float64Array, nulls: Uint8Array): void {
    if (this.free.length < this.limit && values.length === nulls.length && values.byteOffset === 0 && values.byteLength === values.buffer.byteLength) this.free.push({ values, nulls });
  }
}

/** The buffers of a batch's number columns, values then nulls for each: what moves between threads. */
export function numberBuffers(batch: ColumnBatch): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const column of batch.columns.values()) if (column.type !== 'text' && column.type !== 'value') out.push(column.values.buffer as ArrayBuffer, column.nulls.buffer as ArrayBuffer);
  return out;
}

/** Row i's value in `column` as a row object has it: a bool as a boolean, a time as microseconds, null for null. */
export function columnValue(column: Column, i: number): unknown {
  switch (column.type) {
    case 'text':
    case 'value':
      return column.values[i];
    case 'bool':
      return column.nulls[i] ? null : column.values[i] !== 0;
    default:
      return column.nulls[i] ? null : column.values[i];
  }
}

/** Row i as an object, every column's value under its name (columnValue): for the few rows that need one, such as a rejected row. */
export function rowOf(batch: ColumnBatch, i: number, options: { timestamps?: 'date' | 'micros' } = {}): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  for (const [name, column] of batch.columns) {
    const value = columnValue(column, i);
    row[name] = column.type === 'time' && options.timestamps === 'date' && value !== null ? new Date(Math.floor((value as number) / 1000)) : value;
  }
  return row;
}

/** Row objects as a batch of `value` columns, one per name (by default the first row's). */
export function columnsFromRows(rows: ReadonlyArray<Readonly<Record<string, unknown>>>, names: readonly string[] = Object.keys(rows[0] ?? {})): ColumnBatch {
  return { size: rows.length, columns: new Map(names.map((name) => [name, { type: 'value', values: rows.map((r) => r[name]) }])) };
}
