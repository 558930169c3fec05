import { describe, expect, it } from 'vitest';
import { concatFloat64, concatInt32, GrowableFloat64, GrowableInt32 } from '../core/growable.ts';

describe('growable columns (core/growable.ts)', () => {
  it('keeps every value pushed, in order, across the doublings', () => {
    const ints = new GrowableInt32(1);
    const floats = new GrowableFloat64(1);
    for (let i = 0; i < 1000; i++) {
      ints.push(i * 7 - 3000);
      floats.push(i / 3);
    }
    expect(ints.length).toBe(1000);
    expect(Array.from(ints.view())).toEqual(Array.from({ length: 1000 }, (_, i) => i * 7 - 3000));
    expect(floats.view()[999]).toBe(999 / 3);
    expect(floats.view().length).toBe(1000);
  });

  it('joins columns one after the other', () => {
    expect(Array.from(concatInt32([Int32Array.of(1, 2), Int32Array.of(), Int32Array.of(3)]))).toEqual([1, 2, 3]);
    expect(Array.from(concatFloat64([Float64Array.of(0.5), Float64Array.of(-Infinity)]))).toEqual([0.5, -Infinity]);
    const one = Int32Array.of(4, 5);
    expect(concatInt32([one])).toBe(one);
  });
});
