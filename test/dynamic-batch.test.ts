/** The dynamic batcher the prediction server puts in front of its lookups and model calls. */
import { describe, expect, it } from 'vitest';
import { DynamicBatcher, type BatchTiming } from '../serving/dynamic-batch.ts';

/** A batched "double each item" that records every batch it ran, and can be held open. */
function doubler(options: { maxItems: number; maxInFlight?: number; onSettled?: (timing: BatchTiming) => void }) {
  const batches: Array<readonly number[]> = [];
  let release: (() => void) | undefined;
  let hold = false;
  const batcher = new DynamicBatcher<number, number>(async (items) => {
    batches.push(items);
    if (hold) await new Promise<void>((r) => (release = r));
    if (items.includes(-1)) throw new Error('bad item');
    return items.map((x) => x * 2);
  }, options);
  return {
    batcher,
    batches,
    hold: () => (hold = true),
    release: () => {
      hold = false;
      release?.();
    },
  };
}

describe('DynamicBatcher', () => {
  it('runs the items of calls made together as one batch, and answers each call its own results in order', async () => {
    const d = doubler({ maxItems: 100 });
    const answers = await Promise.all([[1], [2, 3], [4], [5, 6, 7]].map((items) => d.batcher.submit(items)));
    expect(answers).toEqual([[2], [4, 6], [8], [10, 12, 14]]);
    expect(d.batches).toEqual([[1, 2, 3, 4, 5, 6, 7]]);
  });

  it('a lone call runs at once, and a batch never holds more than maxItems', async () => {
    const d = doubler({ maxItems: 3 });
    expect(await d.batcher.submit([9])).toEqual([18]);
    await Promise.all([[1, 2], [3], [4, 5], [6]].map((items) => d.batcher.submit(items)));
    expect(d.batches).toEqual([[9], [1, 2, 3], [4, 5, 6]]);
  });

  it('while a batch runs, new calls wait and go together in the next one', async () => {
    const d = doubler({ maxItems: 100, maxInFlight: 1 });
    d.hold();
    const first = d.batcher.submit([1]);
    await new Promise((r) => setImmediate(r));
    const later = [d.batcher.submit([2]), d.batcher.submit([3])];
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(d.batches).toEqual([[1]]);
    d.release();
    expect(await Promise.all([first, ...later])).toEqual([[2], [4], [6]]);
    expect(d.batches).toEqual([[1], [2, 3]]);
  });

  it('each settled batch reports how long its oldest call waited to start and how long it ran', async () => {
    const timings: BatchTiming[] = [];
    const d = doubler({ maxItems: 100, maxInFlight: 1, onSettled: (t) => timings.push(t) });
    d.hold();
    const first = d.batcher.submit([1]);
    await new Promise((r) => setImmediate(r));
    const later = d.batcher.submit([2]);
    await new Promise((r) => setTimeout(r, 60));
    d.release();
    await Promise.all([first, later]);
    expect(timings).toHaveLength(2);
    const [a, b] = timings as [BatchTiming, BatchTiming];
    // The first ran while held (60 ms); the second waited that long for it, then ran at once.
    expect(a.runSeconds).toBeGreaterThanOrEqual(0.05);
    expect(a.waitSeconds).toBeLessThan(0.05);
    expect(b.waitSeconds).toBeGreaterThanOrEqual(0.05);
    expect(b.runSeconds).toBeLessThan(0.05);
  });

  it('a failed batch fails every call in it, and the next batch runs', async () => {
    const d = doubler({ maxItems: 100 });
    const results = await Promise.allSettled([d.batcher.submit([1]), d.batcher.submit([-1])]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(await d.batcher.submit([2])).toEqual([4]);
  });
});
