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
