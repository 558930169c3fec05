import { describe, expect, it } from 'vitest';
import { KeyIds } from '../registry/feature-store/index.ts';

/** A key's id as the stream plan's spine read takes it: from the key's bytes in a buffer, at an offset. */
function idOf(ids: KeyIds, key: string | null): number {
  if (key === null) return ids.idOf(Buffer.alloc(8), 3, -1);
  const bytes = Buffer.from(key, 'utf8');
  const buf = Buffer.concat([Buffer.from('xyz'), bytes, Buffer.from('tail')]);
  return ids.idOf(buf, 3, bytes.length);
}

describe('the stream plan: join key ids from bytes', () => {
  it('gives each distinct key one id, numbered as first seen, short keys (numbers made of their bytes) and long ones (text) alike', () => {
    // Around the 6-byte line between the two ways, with multi-byte UTF-8, the empty key, and keys that differ in length only.
    const keys = ['ORD', 'JFK', '', 'a', 'ab', 'abc123', 'abc1234', 'é', 'éé', 'ééé', 'éééé', 'u1', 'u12', 'user-000001', 'ORD ', '0', '00', '000000', '0000000', '🛫', '🛫🛫'];
    const ids = new KeyIds();
    const first = keys.map((k) => idOf(ids, k));
    expect(first).toEqual(keys.map((_, i) => i));
    // Seen again, in another order and at another offset: the same ids.
    const again = [...keys].reverse().map((k) => idOf(ids, k));
    expect(again).toEqual([...first].reverse());
    expect([...ids.byText]).toEqual(keys.map((k, i) => [k, i]));
    // A null key has no id, and takes none.
    expect(idOf(ids, null)).toBe(-1);
    expect(ids.byText.size).toBe(keys.length);
  });
});
