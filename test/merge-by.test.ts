import { describe, expect, it } from 'vitest';
import { mergeBy } from '../core/streams.ts';

/** A stream of batches that records whether it was closed before its end. */
function batches(values: number[][], tag: string) {
  const state = { closed: false, ended: false };
  async function* gen() {
    try {
      for (const batch of values) yield batch.map((k) => ({ k, tag }));
      state.ended = true;
    } finally {
      if (!state.ended) state.closed = true;
    }
  }
  return { stream: gen(), state };
}

const collect = async <T>(it: AsyncIterable<T[]>) => {
  const out: T[][] = [];
  for await (const b of it) out.push(b);
  return out;
};

describe('mergeBy: streams ordered by a key merged into one', () => {
  it('orders by the key across batches, breaks ties by stream, skips empty batches, and cuts batches of the given size', async () => {
    const a = batches([[1, 4], [], [4, 9]], 'a');
    const b = batches([[0, 4, 5], [10]], 'b');
    const c = batches([], 'c');
    const out = await collect(mergeBy([a.stream, b.stream, c.stream], (r) => r.k, 3));
    expect(out.map((batch) => batch.length)).toEqual([3, 3, 2]);
    expect(out.flat().map((r) => `${r.k}${r.tag}`)).toEqual(['0b', '1a', '4a', '4a', '4b', '5b', '9a', '10b']);
  });

  it('closes every stream when the reader stops early', async () => {
    const a = batches([[1], [3], [5]], 'a');
    const b = batches([[2], [4], [6]], 'b');
    for await (const batch of mergeBy([a.stream, b.stream], (r) => r.k, 1)) {
      if (batch[0]?.k === 2) break;
    }
    expect(a.state.closed).toBe(true);
    expect(b.state.closed).toBe(true);
  });
});
