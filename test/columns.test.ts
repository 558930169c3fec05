import { describe, expect, it } from 'vitest';
import { ColumnArrays, rowOf, type ColumnBatch } from '../core/columns.ts';
import { ColumnDecoder, dataViewOf } from '../registry/db/index.ts';

/** One tuple's fields as COPY sends them: a text, then a float8 (null: length -1). */
function tuple(text: string | null, x: number | null): Buffer {
  const parts: Buffer[] = [];
  for (const value of [text === null ? null : Buffer.from(text, 'utf8'), x === null ? null : Buffer.alloc(8)]) {
    const length = Buffer.alloc(4);
    length.writeInt32BE(value === null ? -1 : value.length);
    parts.push(length);
    if (value) parts.push(value);
  }
  if (x !== null) parts[parts.length - 1]?.writeDoubleBE(x);
  return Buffer.concat(parts);
}

// Short and long, repeated, zero bytes, several bytes a character.
const TEXTS = ['SFO', 'SFO', '', 'a', '\0', '\0\0', 'SFP', 'ünï', 'abcdef', 'abcdefg', '\u{1F600}', null, 'SFO', 'abcdefg', 'a\0'];

function decodeBatch(arrays?: ColumnArrays): ColumnBatch {
  const decoder = new ColumnDecoder(
    [
      { name: 's', pgType: 'text' },
      { name: 'x', pgType: 'double precision' },
    ],
    TEXTS.length,
    arrays,
  );
  TEXTS.forEach((text, row) => {
    const bytes = tuple(text, row % 4 === 3 ? null : row / 2);
    expect(decoder.fields(bytes, dataViewOf(bytes), 0, bytes.length, row, 0)).toBe(2);
  });
  return decoder.batch;
}

const expectedRows = TEXTS.map((s, row) => ({ s, x: row % 4 === 3 ? null : row / 2 }));

describe('batch columns (core/columns.ts)', () => {
  it('decodes texts and numbers into a batch, nulls masked', () => {
    // Twice: short texts are made once per distinct bytes and shared after (a zero byte, or
    // one more, is another text: '', '\0' and '\0\0' differ).
    for (let pass = 0; pass < 2; pass++) {
      const batch = decodeBatch();
      expect(TEXTS.map((_, i) => rowOf(batch, i))).toEqual(expectedRows);
    }
  });

  it('reused arrays (ColumnArrays) come back the size asked, their nulls cleared', () => {
    const arrays = new ColumnArrays(2);
    const first = decodeBatch(arrays);
    const x = first.columns.get('x');
    if (x?.type !== 'float') throw new Error('expected a float column');
    expect(Array.from(x.nulls)).toContain(1);
    arrays.give(x.values, x.nulls);
    const second = decodeBatch(arrays);
    const y = second.columns.get('x');
    expect(y?.type === 'float' && y.values).toBe(x.values);
    expect(TEXTS.map((_, i) => rowOf(second, i))).toEqual(expectedRows);
    // Another size is made anew; past the limit, arrays are left to the collector.
    expect(arrays.take(3).values).toHaveLength(3);
    for (let i = 0; i < 3; i++) arrays.give(new Float64Array(4), new Uint8Array(4));
    const kept = [arrays.take(4), arrays.take(4)];
    kept[0]?.nulls.fill(1);
    arrays.give(kept[0]?.values as Float64Array, kept[0]?.nulls as Uint8Array);
    expect(Array.from(arrays.take(4).nulls)).toEqual([0, 0, 0, 0]);
  });
});
