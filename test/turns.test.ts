import { describe, expect, it } from 'vitest';
import { Turns } from '../core/turns.ts';

/** Settles pending promise callbacks. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('turns (core/turns.ts)', () => {
  it('gives one turn at a time, in the order asked', async () => {
    const turns = new Turns();
    const order: string[] = [];
    await turns.take();
    const b = turns.take().then(() => order.push('b'));
    const c = turns.take().then(() => order.push('c'));
    await settle();
    expect(order).toEqual([]);
    turns.pass();
    await b;
    await settle();
    expect(order).toEqual(['b']);
    turns.pass();
    await c;
    expect(order).toEqual(['b', 'c']);
    turns.pass();
    // Free again: the next one goes at once.
    await turns.take();
    turns.pass();
  });

  it('a caller whose signal aborts while it waits leaves the line, and the next one gets the turn', async () => {
    const turns = new Turns();
    await turns.take();
    const abort = new AbortController();
    const cancelled = turns.take(abort.signal);
    const next = turns.take();
    abort.abort(new Error('cancelled while waiting'));
    await expect(cancelled).rejects.toThrow('cancelled while waiting');
    turns.pass();
    await next;
    // Already aborted: refused at once while the turn is taken.
    await expect(turns.take(AbortSignal.abort(new Error('too late')))).rejects.toThrow('too late');
    turns.pass();
    await turns.take();
  });
});
