import { describe, expect, it } from 'vitest';
import { faultedRoom, room, type Scratch } from '../core/scratch.ts';

const MB = 1 << 20;

describe('scratch buffers (core/scratch.ts)', () => {
  it('faults a fresh buffer in off the main thread before it is ready, without this thread writing it', async () => {
    const scratch: Scratch = {};
    const bytes = 96 * MB;
    const before = process.memoryUsage.rss();
    const { buf, ready } = faultedRoom(scratch, bytes);
    expect(buf.length).toBeGreaterThanOrEqual(bytes);
    expect(scratch.buf).toBe(buf);
    await ready;
    // Resident now: the read of /dev/zero touched every page (a buffer only allocated is not).
    expect(process.memoryUsage.rss() - before).toBeGreaterThan(0.9 * bytes);
    expect([buf[0], buf[bytes >> 1], buf[bytes - 1]]).toEqual([0, 0, 0]);
    buf.fill(7, 0, MB);
    expect(buf[MB - 1]).toBe(7);
  });

  it('keeps a buffer that fits as it is: nothing read into it, ready at once', async () => {
    const scratch: Scratch = {};
    const had = room(scratch, 4 * MB);
    had.fill(9);
    const { buf, ready } = faultedRoom(scratch, 2 * MB);
    expect(buf).toBe(had);
    await ready;
    expect([buf[0], buf[2 * MB], buf[4 * MB - 1]]).toEqual([9, 9, 9]);
  });
});
